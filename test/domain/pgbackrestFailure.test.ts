import { assert, describe, it } from "@effect/vitest"
import { PgBackRestFailed } from "../../src/domain/errors.js"
import { classifyFailure } from "../../src/domain/pgbackrestFailure.js"

const failed = (exitCode: number, stderrTail = "") =>
  new PgBackRestFailed({ command: "archive-push", exitCode, stderrTail })

describe("classifyFailure", () => {
  it("reads single-repository exit codes", () => {
    assert.strictEqual(classifyFailure(failed(49)), "transient")
    assert.strictEqual(classifyFailure(failed(101)), "transient")
    assert.strictEqual(classifyFailure(failed(103)), "stanza-missing")
    assert.strictEqual(classifyFailure(failed(55)), "stanza-missing")
    assert.strictEqual(classifyFailure(failed(44)), "other")
    assert.strictEqual(classifyFailure(failed(82)), "other")
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
})
