import { assert, describe, it } from "@effect/vitest"
import { classifyFailure } from "../../src/domain/pgbackrestFailure.js"

const failed = (exitCode: number, stderrTail = "") => ({ exitCode, stderrTail })

describe("classifyFailure", () => {
  it("reads single-repository exit codes", () => {
    assert.strictEqual(classifyFailure(failed(49)), "transient")
    assert.strictEqual(classifyFailure(failed(101)), "transient")
    assert.strictEqual(classifyFailure(failed(103)), "stanza-missing")
    assert.strictEqual(classifyFailure(failed(55)), "stanza-missing")
    assert.strictEqual(classifyFailure(failed(44)), "other")
    assert.strictEqual(classifyFailure(failed(82)), "archive-timeout")
  })

  it("reads the per-repository errors of exit 104 (several repositories)", () => {
    // As pgBackRest 2.45 prints it when repo2 lost its stanza while repo1 is fine.
    const missing = failed(
      104,
      "ERROR: [104]: archive-push command encountered error(s):\n" +
        "            repo2: [FileMissingError] unable to load info file '/repo/archive/main/archive.info' or '/repo/archive/main/archive.info.copy':\n",
    )
    assert.strictEqual(classifyFailure(missing), "stanza-missing")
    const down = failed(
      104,
      "ERROR: [104]: archive-push command encountered error(s):\n            repo1: [HostConnectError] unable to connect to 'localhost:9000': [111] Connection refused\n",
    )
    assert.strictEqual(classifyFailure(down), "transient")
    const mixed = failed(
      104,
      "repo1: [HostConnectError] unable to connect\nrepo2: [ArchiveMismatchError] WAL file belongs to another database\n",
    )
    assert.strictEqual(classifyFailure(mixed), "other")
    assert.strictEqual(classifyFailure(failed(104, "ERROR: [104]: something else")), "other")
  })

  it("reads exit 103 as transient when every repository was only out of reach (S3 stopped)", () => {
    // pgBackRest 2.45, archive-get with one S3 repository whose endpoint does not answer.
    const named = failed(
      103,
      "WARN: repo1: [HostConnectError] unable to load info file '/r/archive/main/archive.info' or '/r/archive/main/archive.info.copy':\n" +
        "      HostConnectError: unable to connect to 'localhost:9000 (127.0.0.1)': [111] Connection refused\n" +
        "      HostConnectError: unable to connect to 'localhost:9000 (127.0.0.1)': [111] Connection refused\n" +
        "      HINT: archive.info cannot be opened but is required to push/get WAL segments.\n" +
        "ERROR: [103]: unable to find a valid repository",
    )
    assert.strictEqual(classifyFailure(named), "transient")
    // A wrapping error type: its cause lines decide.
    const wrapped = failed(
      103,
      "ERROR: [103]: unable to find a valid repository:\n" +
        "       repo1: [FormatError] unable to load info file '/r/archive/main/archive.info' or '/r/archive/main/archive.info.copy':\n" +
        "       HostConnectError: unable to connect to 'localhost:9000 (127.0.0.1)': [111] Connection refused\n" +
        "       ServiceError: HTTP request failed with 503 (Slow Down)\n",
    )
    assert.strictEqual(classifyFailure(wrapped), "transient")
    // The stanza is gone from the repository: not something waiting cures.
    const missing = failed(
      103,
      "WARN: repo1: [FileMissingError] unable to load info file '/repo/archive/fx/archive.info' or '/repo/archive/fx/archive.info.copy':\n" +
        "      FileMissingError: unable to open missing file '/repo/archive/fx/archive.info' for read\n" +
        "      FileMissingError: unable to open missing file '/repo/archive/fx/archive.info.copy' for read\n" +
        "ERROR: [103]: unable to find a valid repository",
    )
    assert.strictEqual(classifyFailure(missing), "stanza-missing")
    const oneOfEach = failed(
      103,
      "repo1: [FormatError] unable to load info file 'a' or 'b':\n  HostConnectError: refused\n  HostConnectError: refused\n" +
        "repo2: [FormatError] unable to load info file 'c' or 'd':\n  HostConnectError: refused\n  CryptoError: cipher\n",
    )
    assert.strictEqual(classifyFailure(oneOfEach), "stanza-missing")
  })
})
