import { assert, describe, it } from "@effect/vitest"
import { Either, Redacted } from "effect"
import fc from "fast-check"
import { childEnvironment } from "../../src/domain/pgbackrestEnv.js"
import { decodeStanza, repositories } from "../../src/domain/stanza.js"
import { type RepositorySecrets, stanzaEnv } from "../../src/domain/stanzaEnv.js"
import {
  applyMutation,
  breaksLine,
  hostileJson,
  type Mutation,
  mutationOf,
  renderPath,
  valueAt,
} from "./arbitraries.js"

/**
 * Stanza manifests from a hostile author: one field of a complete, valid Stanza made hostile at a
 * time (a wrong type, a shell or traversal string, a control character, a large string, a missing
 * field, an unknown field), and arbitrary JSON. Decoding must never throw; it refuses with the path
 * of the field that was made hostile, or accepts, and then the pgBackRest environment built from the
 * Stanza has only `PGBACKREST_*` option names and values a child process receives intact.
 */

const valid = {
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: "main", namespace: "db" },
  spec: {
    stanzaConfiguration: {
      name: "main",
      s3Repositories: [
        {
          bucket: "backups",
          endpoint: "https://minio.minio.svc:9000",
          region: "us-east-1",
          repoPath: "/pg/main",
          uriStyle: "path",
          verifyTLS: true,
          retentionPolicy: {
            full: 7,
            fullType: "count",
            diff: 3,
            archive: 2,
            archiveType: "full",
            history: 30,
          },
          secretRef: {
            accessKeyId: { name: "s3-creds", key: "ACCESS_KEY_ID" },
            secretAccessKey: { name: "s3-creds", key: "ACCESS_SECRET_KEY" },
          },
          cipherConfig: { encryptionPass: { name: "cipher", key: "pass" }, type: "aes-256-cbc" },
          endpointCA: { name: "minio-ca", key: "ca.crt" },
        },
      ],
      posixRepositories: [{ repoPath: "/nfs/pg", retentionPolicy: { full: 2 } }],
      archive: { async: true, pushQueueMax: "1GiB", getQueueMax: "512MiB" },
      processMax: 2,
      compressConfig: { type: "lz4", level: 1 },
      startFast: true,
      delta: true,
      logLevel: "info",
      customEnvVar: { PGBACKREST_IO_TIMEOUT: "60" },
    },
  },
}

const instance = {
  pgData: "/var/lib/postgresql/data/pgdata",
  pgSocketDir: "/controller/run",
  pgPort: 5432,
  lockPath: "/controller/tmp/pgbackrest-plugin/lock",
  spoolPath: "/var/lib/postgresql/data/pgbackrest-plugin/spool",
}

const secrets: RepositorySecrets = {
  accessKeyId: Redacted.make("AKIAEXAMPLE"),
  secretAccessKey: Redacted.make("wJalrXUtnFEMI/K7MDENG"),
  encryptionPass: Redacted.make("correct horse battery staple"),
  caFile: "/controller/tmp/pgbackrest-plugin/ca/0123456789abcdef.pem",
}

const OPTION_NAME = /^PGBACKREST_[A-Z0-9_]+$/

/** The environment pgBackRest would be started with for an accepted Stanza, secrets revealed. */
const environmentOf = (input: unknown) =>
  Either.map(decodeStanza(input), (stanza) => {
    const config = stanza.spec.stanzaConfiguration
    const env = stanzaEnv(
      config,
      repositories(config).map(() => secrets),
      instance,
    )
    return { names: Object.keys(env), values: childEnvironment({ PATH: "/usr/bin", HOME: "/tmp" }, env) }
  })

/** The path the plugin must name when refusing `mutation`: the mutated field, or a field inside it. */
const expectedField = (mutation: Mutation): string =>
  mutation.kind === "extra" ? renderPath("", [...mutation.path, mutation.key]) : renderPath("", mutation.path)

const isAtOrBelow = (field: string, expected: string): boolean =>
  field === expected || field.startsWith(`${expected}.`) || field.startsWith(`${expected}[`)

/** `customEnvVar` is a map: any `PGBACKREST_*` name is a valid key there, any other is refused. */
const isCustomEnv = (mutation: Mutation): boolean =>
  mutation.path[mutation.path.length - 1] === "customEnvVar"

/** Unknown fields are refused in `spec` only: the API server adds many to metadata and the envelope. */
const isStrict = (mutation: Mutation): boolean => mutation.path[0] === "spec"

describe("hostile Stanza manifests", () => {
  it("the base Stanza decodes: every refusal below comes from the field made hostile", () => {
    assert.isTrue(Either.isRight(decodeStanza(valid)))
  })

  it("decoding never throws; a refusal names the field made hostile; keys stay PGBACKREST_*", () => {
    fc.assert(
      fc.property(mutationOf(valid), (mutation) => {
        const input = applyMutation(valid, mutation)
        const result = environmentOf(input)
        if (Either.isLeft(result)) {
          const { field, reason, message } = result.left
          assert.isTrue(
            isAtOrBelow(field, expectedField(mutation)),
            `refusal names ${field}, expected ${expectedField(mutation)}`,
          )
          assert.isNotEmpty(reason)
          assert.strictEqual(message, `${field}: ${reason}`)
          if (mutation.kind === "extra") {
            assert.include(
              reason,
              isCustomEnv(mutation) ? "must be named PGBACKREST_<OPTION>" : "unknown field",
            )
          }
          if (mutation.kind === "delete") {
            // `spec` itself is read as unknown first: its absence reads "Expected {...}, actual undefined";
            // S3 keys come in pairs.
            assert.match(reason, /is missing|actual undefined|go together/)
          }
          return
        }
        // Accepted: the mutation was harmless (an optional field removed, a value that is valid) ...
        if (mutation.kind === "extra") {
          const alreadyThere = valueAt(valid, [...mutation.path, mutation.key]) !== undefined
          const allowed = isCustomEnv(mutation) ? OPTION_NAME.test(mutation.key) : !isStrict(mutation)
          // A `__proto__` key of the customEnvVar map is dropped by decoding: it never reaches the
          // environment (checked below), so accepting it is harmless.
          assert.isTrue(
            allowed || alreadyThere || mutation.key === "__proto__",
            `unknown field ${expectedField(mutation)} accepted`,
          )
        }
        // ... and the environment names options only.
        for (const name of result.right.names) {
          assert.match(name, OPTION_NAME)
        }
      }),
      { numRuns: 300 },
    )
  })

  it("arbitrary JSON never makes decoding throw; a refusal is `field: reason`", () => {
    const anyShape = fc.oneof(
      fc.jsonValue({ maxDepth: 4 }),
      fc.record({ metadata: fc.record({ name: hostileJson }), spec: fc.jsonValue({ maxDepth: 3 }) }),
      fc.record({
        metadata: fc.constant({ name: "main" }),
        spec: fc.record({ stanzaConfiguration: fc.dictionary(fc.string(), hostileJson) }),
      }),
    )
    fc.assert(
      fc.property(anyShape, (input) => {
        const result = decodeStanza(input)
        if (Either.isLeft(result)) {
          assert.match(result.left.field, /^(\(root\)$|(apiVersion|kind|metadata|spec)(\.|\[|$))/)
          assert.isNotEmpty(result.left.reason)
          assert.strictEqual(result.left.message, `${result.left.field}: ${result.left.reason}`)
        }
      }),
      { numRuns: 300 },
    )
  })

  // Once a hole: a newline in `bucket`, `region`, `repoPath` or a `customEnvVar` value reached
  // pgBackRest's environment (the bucket and region go into the S3 requests it signs), and a NUL made
  // Node's spawn throw, reported as an internal error instead of naming the field. src/domain/stanza.ts
  // now refuses control characters in every free-form string that reaches pgBackRest.
  it("an accepted Stanza gives an environment without newline or NUL in any value", () => {
    const config = ["spec", "stanzaConfiguration"]
    const s3 = [...config, "s3Repositories", 0]
    const set = (path: ReadonlyArray<string | number>, value: unknown): [Mutation] => [
      { kind: "set", path, value },
    ]
    fc.assert(
      fc.property(mutationOf(valid), (mutation) => {
        const result = environmentOf(applyMutation(valid, mutation))
        if (Either.isRight(result)) {
          for (const [name, value] of Object.entries(result.right.values)) {
            assert.isFalse(breaksLine(value), `${name}=${JSON.stringify(value)}`)
          }
        }
      }),
      {
        numRuns: 300,
        examples: [
          set([...s3, "bucket"], "backups\nHost: evil"),
          set([...s3, "region"], "us-east-1\r\n"),
          set([...s3, "repoPath"], "/pg\n/main"),
          set([...config, "posixRepositories", 0, "repoPath"], "/nfs/pg\u0000"),
          set([...config, "customEnvVar", "PGBACKREST_IO_TIMEOUT"], "60\u0000"),
        ],
      },
    )
  })
})
