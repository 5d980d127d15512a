import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { loadYaml } from "@kubernetes/client-node"
import { Either } from "effect"
import { decodeStanza, type Stanza } from "../../src/domain/stanza.js"

const yaml = (text: string): unknown => loadYaml<unknown>(text)

const decoded = (input: unknown): Stanza => {
  const result = decodeStanza(input)
  if (Either.isLeft(result)) {
    assert.fail(`expected the Stanza to decode, got: ${result.left.message}`)
  }
  return result.right
}

const rejection = (input: unknown): { field: string; reason: string } => {
  const result = decodeStanza(input)
  if (Either.isRight(result)) {
    assert.fail("expected the Stanza to be rejected")
  }
  return { field: result.left.field, reason: result.left.reason }
}

// The example of the plugin's documentation, as users have it (note the scheme and port in the endpoint).
const documented = `
apiVersion: pgbackrest.dalibo.com/v1
kind: Stanza
metadata:
  name: stanza-sample
spec:
  stanzaConfiguration:
    name: main
    s3Repositories:
      - bucket: bucket-01
        endpoint: https://172.18.0.2:9000
        region: fr-par
        repoPath: /repo-01
        uriStyle: path
        verifyTLS: false
        retentionPolicy:
          full: 7
          fullType: count
          diff: 14
          archive: 2
          archiveType: full
          history: 30
        secretRef:
          accessKeyId:
            name: minio
            key: ACCESS_KEY_ID
          secretAccessKey:
            name: minio
            key: ACCESS_SECRET_KEY
`

const minimal = () => ({
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: "s", namespace: "db" },
  spec: {
    stanzaConfiguration: {
      name: "main",
      s3Repositories: [{ bucket: "b", endpoint: "s3.example.com", region: "r", repoPath: "/p" }],
    },
  },
})

/** `minimal()` with one value replaced at a path, for table-driven invalid cases. */
const withValue = (path: ReadonlyArray<string | number>, value: unknown): unknown => {
  const root: Record<string | number, unknown> = minimal()
  let node: Record<string | number, unknown> = root
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    if (typeof next !== "object" || next === null) {
      throw new Error(`bad path ${path.join(".")}`)
    }
    node = next as Record<string | number, unknown>
  }
  const last = path[path.length - 1]
  if (last !== undefined) {
    node[last] = value
  }
  return root
}

describe("decodeStanza", () => {
  it("decodes the documented example unchanged, history included", () => {
    const stanza = decoded(yaml(documented))
    const config = stanza.spec.stanzaConfiguration
    assert.strictEqual(stanza.metadata.name, "stanza-sample")
    assert.strictEqual(config.name, "main")
    const repo = config.s3Repositories[0]
    assert.strictEqual(repo?.endpoint, "https://172.18.0.2:9000")
    assert.strictEqual(repo?.verifyTLS, false)
    assert.deepStrictEqual(repo?.retentionPolicy, {
      full: 7,
      fullType: "count",
      diff: 14,
      archive: 2,
      archiveType: "full",
      history: 30,
    })
    assert.deepStrictEqual(repo?.secretRef?.secretAccessKey, { name: "minio", key: "ACCESS_SECRET_KEY" })
  })

  it("decodes every manifest in examples/ that is a Stanza", () => {
    const files = fs.readdirSync("examples").filter((file) => file.endsWith(".yaml"))
    let stanzas = 0
    for (const file of files) {
      const object = yaml(fs.readFileSync(`examples/${file}`, "utf8"))
      if (typeof object === "object" && object !== null && "kind" in object && object.kind === "Stanza") {
        decoded(object)
        stanzas++
      }
    }
    assert.isAtLeast(stanzas, 1)
  })

  it("applies the defaults: TLS verification on, start fast, delta, synchronous archiving", () => {
    const config = decoded(minimal()).spec.stanzaConfiguration
    assert.strictEqual(config.s3Repositories[0]?.verifyTLS, true)
    assert.strictEqual(config.startFast, true)
    assert.strictEqual(config.delta, true)
    assert.strictEqual(config.archive, undefined)
  })

  it("reads the optional settings", () => {
    const stanza = decoded(
      withValue(["spec", "stanzaConfiguration"], {
        name: "main",
        s3Repositories: [
          {
            bucket: "b",
            endpoint: "minio:9000",
            region: "r",
            repoPath: "/one",
            cipherConfig: { encryptionPass: { name: "sec", key: "PASS" } },
            endpointCA: { name: "ca", key: "ca.crt" },
          },
          { bucket: "b2", endpoint: "s3.example.com", region: "r", repoPath: "/two", uriStyle: "host" },
        ],
        archive: { async: true, pushQueueMax: "1GiB", getQueueMax: "128MiB" },
        processMax: 4,
        compressConfig: { type: "lz4", level: 1 },
        startFast: false,
        delta: false,
        logLevel: "info",
        customEnvVar: { PGBACKREST_IO_TIMEOUT: "120" },
      }),
    )
    const config = stanza.spec.stanzaConfiguration
    assert.strictEqual(config.s3Repositories.length, 2)
    assert.strictEqual(config.s3Repositories[0]?.cipherConfig?.type, "aes-256-cbc")
    assert.deepStrictEqual(config.archive, { async: true, pushQueueMax: "1GiB", getQueueMax: "128MiB" })
    assert.strictEqual(config.processMax, 4)
    assert.deepStrictEqual(config.customEnvVar, { PGBACKREST_IO_TIMEOUT: "120" })
  })

  const base = ["spec", "stanzaConfiguration"]
  const repo = [...base, "s3Repositories", 0]
  const invalid: ReadonlyArray<readonly [string, ReadonlyArray<string | number>, unknown, string, string]> = [
    ["a missing stanza name", [...base, "name"], undefined, "spec.stanzaConfiguration.name", ""],
    [
      "a stanza name with a slash",
      [...base, "name"],
      "a/b",
      "spec.stanzaConfiguration.name",
      "letters, digits",
    ],
    [
      "no repository",
      [...base, "s3Repositories"],
      [],
      "spec.stanzaConfiguration.s3Repositories",
      "at least one repository",
    ],
    [
      "an empty bucket",
      [...repo, "bucket"],
      "",
      "spec.stanzaConfiguration.s3Repositories[0].bucket",
      "must not be empty",
    ],
    [
      "a missing region",
      [...repo, "region"],
      undefined,
      "spec.stanzaConfiguration.s3Repositories[0].region",
      "",
    ],
    [
      "a relative repoPath",
      [...repo, "repoPath"],
      "repo",
      "spec.stanzaConfiguration.s3Repositories[0].repoPath",
      "absolute",
    ],
    [
      "a repoPath escaping with ..",
      [...repo, "repoPath"],
      "/a/../b",
      "spec.stanzaConfiguration.s3Repositories[0].repoPath",
      "'..'",
    ],
    [
      "an http endpoint",
      [...repo, "endpoint"],
      "http://minio:9000",
      "spec.stanzaConfiguration.s3Repositories[0].endpoint",
      "http://",
    ],
    [
      "a bad uriStyle",
      [...repo, "uriStyle"],
      "virtual",
      "spec.stanzaConfiguration.s3Repositories[0].uriStyle",
      "",
    ],
    [
      "verifyTLS as a string",
      [...repo, "verifyTLS"],
      "false",
      "spec.stanzaConfiguration.s3Repositories[0].verifyTLS",
      "",
    ],
    [
      "a misspelt field",
      [...repo, "verifyTls"],
      false,
      "spec.stanzaConfiguration.s3Repositories[0].verifyTls",
      "unknown field",
    ],
    [
      "retention full of 0",
      [...repo, "retentionPolicy"],
      { full: 0 },
      "spec.stanzaConfiguration.s3Repositories[0].retentionPolicy.full",
      "from 1",
    ],
    [
      "negative history",
      [...repo, "retentionPolicy"],
      { history: -1 },
      "spec.stanzaConfiguration.s3Repositories[0].retentionPolicy.history",
      "from 0",
    ],
    [
      "a bad fullType",
      [...repo, "retentionPolicy"],
      { fullType: "days" },
      "spec.stanzaConfiguration.s3Repositories[0].retentionPolicy.fullType",
      "",
    ],
    [
      "half a key pair",
      [...repo, "secretRef"],
      { accessKeyId: { name: "s", key: "k" } },
      "spec.stanzaConfiguration.s3Repositories[0].secretRef.secretAccessKey",
      "give both or neither",
    ],
    [
      "a selector without key",
      [...repo, "secretRef"],
      { accessKeyId: { name: "s" }, secretAccessKey: { name: "s", key: "k" } },
      "spec.stanzaConfiguration.s3Repositories[0].secretRef.accessKeyId.key",
      "",
    ],
    [
      "a cipher without pass",
      [...repo, "cipherConfig"],
      { type: "aes-256-cbc" },
      "spec.stanzaConfiguration.s3Repositories[0].cipherConfig.encryptionPass",
      "",
    ],
    [
      "an unknown cipher",
      [...repo, "cipherConfig"],
      { type: "rot13", encryptionPass: { name: "s", key: "k" } },
      "spec.stanzaConfiguration.s3Repositories[0].cipherConfig.type",
      "",
    ],
    [
      "a bad queue size",
      [...base, "archive"],
      { pushQueueMax: "lots" },
      "spec.stanzaConfiguration.archive.pushQueueMax",
      "size",
    ],
    ["processMax 0", [...base, "processMax"], 0, "spec.stanzaConfiguration.processMax", "from 1 to 999"],
    [
      "an unknown compression",
      [...base, "compressConfig"],
      { type: "xz" },
      "spec.stanzaConfiguration.compressConfig.type",
      "",
    ],
    ["an unknown log level", [...base, "logLevel"], "verbose", "spec.stanzaConfiguration.logLevel", ""],
    [
      "a custom variable outside PGBACKREST_",
      [...base, "customEnvVar"],
      { LD_PRELOAD: "/x.so" },
      "spec.stanzaConfiguration.customEnvVar.LD_PRELOAD",
      "PGBACKREST_",
    ],
    [
      "Azure repositories",
      [...base, "azureRepositories"],
      [{ account: "a" }],
      "spec.stanzaConfiguration.azureRepositories",
      "not supported",
    ],
    [
      "a bucket with a newline",
      [...repo, "bucket"],
      "backups\nHost: evil",
      "spec.stanzaConfiguration.s3Repositories[0].bucket",
      "must not contain control characters such as a newline",
    ],
    [
      "a region with a carriage return",
      [...repo, "region"],
      "us-east-1\r",
      "spec.stanzaConfiguration.s3Repositories[0].region",
      "must not contain control characters",
    ],
    [
      "a repoPath with a newline",
      [...repo, "repoPath"],
      "/pg\n/main",
      "spec.stanzaConfiguration.s3Repositories[0].repoPath",
      "must not contain control characters",
    ],
    [
      "a customEnvVar value with NUL",
      [...base, "customEnvVar"],
      { PGBACKREST_IO_TIMEOUT: "60\u0000" },
      "spec.stanzaConfiguration.customEnvVar.PGBACKREST_IO_TIMEOUT",
      "must not contain control characters",
    ],
    [
      "a Secret name with a newline",
      [...repo, "endpointCA"],
      { name: "ca\nevil", key: "ca.crt" },
      "spec.stanzaConfiguration.s3Repositories[0].endpointCA.name",
      "must not contain control characters",
    ],
    ["a wrong kind", ["kind"], "Cluster", "kind", ""],
    ["no metadata name", ["metadata"], {}, "metadata.name", ""],
    ["no spec", ["spec"], undefined, "spec", ""],
  ]

  for (const [label, path, value, field, reason] of invalid) {
    it(`rejects ${label}, naming ${field}`, () => {
      const error = rejection(withValue(path, value))
      assert.strictEqual(error.field, field)
      assert.include(error.reason, reason)
    })
  }

  describe("control characters in strings that reach pgBackRest's environment", () => {
    const controls = [...Array.from({ length: 0x20 }, (_, code) => String.fromCharCode(code)), "\u007f"]
    const fields: ReadonlyArray<readonly [ReadonlyArray<string | number>, string, string]> = [
      [[...repo, "bucket"], "spec.stanzaConfiguration.s3Repositories[0].bucket", "backups"],
      [[...repo, "region"], "spec.stanzaConfiguration.s3Repositories[0].region", "us-east-1"],
      [[...repo, "repoPath"], "spec.stanzaConfiguration.s3Repositories[0].repoPath", "/pg/main"],
    ]

    it("refuses each C0 control and DEL in bucket, region and repoPath, naming the field", () => {
      for (const [path, field, ordinary] of fields) {
        for (const control of controls) {
          const error = rejection(withValue(path, `${ordinary}${control}x`))
          assert.strictEqual(error.field, field, JSON.stringify(control))
          assert.strictEqual(error.reason, "must not contain control characters such as a newline")
        }
      }
    })

    it("refuses them in a posix repoPath, a customEnvVar value and a Secret selector", () => {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string | number>, unknown, string]> = [
        [
          [...base, "posixRepositories"],
          [{ repoPath: "/nfs\n/pg" }],
          "spec.stanzaConfiguration.posixRepositories[0].repoPath",
        ],
        [
          [...base, "customEnvVar"],
          { PGBACKREST_IO_TIMEOUT: "60", PGBACKREST_REPO1_S3_ROLE: "role\u0000" },
          "spec.stanzaConfiguration.customEnvVar.PGBACKREST_REPO1_S3_ROLE",
        ],
        [
          [...repo, "secretRef"],
          { accessKeyId: { name: "s3\r", key: "id" }, secretAccessKey: { name: "s3", key: "secret" } },
          "spec.stanzaConfiguration.s3Repositories[0].secretRef.accessKeyId.name",
        ],
        [
          [...repo, "cipherConfig"],
          { encryptionPass: { name: "cipher", key: "pass\u007f" } },
          "spec.stanzaConfiguration.s3Repositories[0].cipherConfig.encryptionPass.key",
        ],
      ]
      for (const [path, value, field] of cases) {
        const error = rejection(withValue(path, value))
        assert.strictEqual(error.field, field)
        assert.strictEqual(error.reason, "must not contain control characters such as a newline")
      }
    })

    it("still says an empty bucket is empty", () => {
      assert.strictEqual(rejection(withValue([...repo, "bucket"], "")).reason, "must not be empty")
    })

    it("accepts ordinary text unchanged: spaces, punctuation, non-ASCII letters, U+2028", () => {
      const config = decoded(
        withValue(["spec", "stanzaConfiguration"], {
          name: "main",
          s3Repositories: [
            {
              bucket: "pg-backups.eu-1",
              endpoint: "s3.example.com",
              region: "région ~1",
              repoPath: "/a b/é",
            },
          ],
          posixRepositories: [{ repoPath: "/nfs/sauvegardes\u2028" }],
          customEnvVar: { PGBACKREST_REPO1_S3_ROLE: "a role; x=y", PGBACKREST_IO_TIMEOUT: "" },
        }),
      ).spec.stanzaConfiguration
      assert.strictEqual(config.s3Repositories[0]?.bucket, "pg-backups.eu-1")
      assert.strictEqual(config.s3Repositories[0]?.region, "région ~1")
      assert.strictEqual(config.s3Repositories[0]?.repoPath, "/a b/é")
      assert.strictEqual(config.posixRepositories[0]?.repoPath, "/nfs/sauvegardes\u2028")
      assert.deepStrictEqual(config.customEnvVar, {
        PGBACKREST_REPO1_S3_ROLE: "a role; x=y",
        PGBACKREST_IO_TIMEOUT: "",
      })
    })
  })
})
