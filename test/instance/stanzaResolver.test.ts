import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted, Ref, TestClock } from "effect"
import { Kubernetes, Resources } from "../../src/adapters/kubernetes.js"
import { Secrets } from "../../src/adapters/secrets.js"
import { decodeStanza } from "../../src/domain/stanza.js"
import { stanzaFingerprint } from "../../src/domain/stanzaEnv.js"
import { InstanceSettings } from "../../src/instance/settings.js"
import { StanzaResolver } from "../../src/instance/stanzaResolver.js"
import { instanceSettingsIn } from "../fixtures/pgbackrest-info/fakes.js"
import { tempDir } from "../support/tempDir.js"

const ACCESS_KEY_ID = "AKIA-RESOLVER-TEST"
const SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/resolver"
const ENCRYPTION_PASS = "cipher-pass-5f4e3d2c"
const CA_PEM = [
  "-----BEGIN CERTIFICATE-----",
  "MIIBszCCAVmgAwIBAgIUFakeFakeFakeFakeFakeFakeFakeFakeFakeMAoGCCqGSM49",
  "-----END CERTIFICATE-----",
  "",
].join("\n")

const secret = {
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "s3-creds", namespace: "db" },
  stringData: { ACCESS_KEY_ID, ACCESS_SECRET_KEY: SECRET_ACCESS_KEY, ENCRYPTION_PASS, "ca.crt": CA_PEM },
}

const s3Repository = (secretName = "s3-creds", accessKeyIdKey = "ACCESS_KEY_ID") => ({
  bucket: "backups",
  endpoint: "https://minio.db.svc:9000",
  region: "eu-west-3",
  repoPath: "/pg/main",
  uriStyle: "path",
  secretRef: {
    accessKeyId: { name: secretName, key: accessKeyIdKey },
    secretAccessKey: { name: secretName, key: "ACCESS_SECRET_KEY" },
  },
  cipherConfig: { encryptionPass: { name: secretName, key: "ENCRYPTION_PASS" } },
  endpointCA: { name: secretName, key: "ca.crt" },
})

const stanza = (name: string, stanzaConfiguration: unknown) => ({
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name, namespace: "db" },
  spec: { stanzaConfiguration },
})

const mainConfiguration = {
  name: "main",
  s3Repositories: [s3Repository()],
  posixRepositories: [{ repoPath: "/mnt/nfs/pg" }],
}

const objects = [
  secret,
  stanza("main", mainConfiguration),
  // The bucket is missing: the spec does not decode.
  stanza("broken", { name: "broken", s3Repositories: [{ ...s3Repository(), bucket: undefined }] }),
  stanza("no-secret", { name: "no-secret", s3Repositories: [s3Repository("absent")] }),
  stanza("no-key", { name: "no-key", s3Repositories: [s3Repository("s3-creds", "AWS_ACCESS_KEY_ID")] }),
  {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name: "pg", namespace: "db" },
    spec: { plugins: [{ name: "pgbackrest.dalibo.com", parameters: { stanzaRef: "main" } }] },
  },
]

/** Counts Stanza reads reaching Kubernetes. */
class StanzaReads extends Effect.Service<StanzaReads>()("test/StanzaReads", {
  effect: Ref.make(0),
}) {}

/** The in-memory Kubernetes, with getStanza counted. */
const CountingKubernetes = Layer.effect(
  Kubernetes,
  Effect.gen(function* () {
    const inner = yield* Kubernetes
    const reads = yield* StanzaReads
    return Kubernetes.make({
      ...inner,
      getStanza: (namespace: string, name: string) =>
        Ref.update(reads, (n) => n + 1).pipe(Effect.zipRight(inner.getStanza(namespace, name))),
    })
  }),
).pipe(Layer.provide(Kubernetes.Fake(objects)))

/** Settings of an instance whose writable paths are in a fresh temp directory, removed afterwards. */
const Settings = Layer.scoped(
  InstanceSettings,
  Effect.map(tempDir(), (dir) => ({ ...instanceSettingsIn(dir), pgPort: 5433 })),
)

const TestLayer = StanzaResolver.Default.pipe(
  Layer.provideMerge(Secrets.Default),
  Layer.provideMerge(CountingKubernetes),
  Layer.provideMerge(StanzaReads.Default),
  Layer.provideMerge(Settings),
  Layer.provideMerge(NodeContext.layer),
)

const stanzaReads = Effect.flatMap(StanzaReads, Ref.get)

const resolve = (name: string) => Effect.flatMap(StanzaResolver, (resolver) => resolver.resolve("db", name))

describe("StanzaResolver", () => {
  it.scoped("builds the pgBackRest environment of a Stanza, credentials Redacted", () =>
    Effect.gen(function* () {
      const settings = yield* InstanceSettings
      const resolved = yield* resolve("main")
      assert.strictEqual(resolved.namespace, "db")
      assert.strictEqual(resolved.name, "main")
      assert.strictEqual(resolved.stanza.spec.stanzaConfiguration.name, "main")
      const decoded = decodeStanza(stanza("main", mainConfiguration))
      assert.isTrue(decoded._tag === "Right")
      if (decoded._tag === "Right") {
        assert.strictEqual(resolved.fingerprint, stanzaFingerprint(decoded.right.spec.stanzaConfiguration))
      }

      const { env } = resolved
      const plainValues = Object.fromEntries(
        Object.entries(env).filter(([, value]) => !Redacted.isRedacted(value)),
      )
      assert.deepInclude(plainValues, {
        PGBACKREST_CONFIG: "/dev/null",
        PGBACKREST_STANZA: "main",
        PGBACKREST_PG1_PATH: settings.pgData,
        PGBACKREST_PG1_SOCKET_PATH: settings.pgHost,
        PGBACKREST_PG1_PORT: "5433",
        PGBACKREST_LOCK_PATH: path.join(settings.runDir, "lock"),
        PGBACKREST_SPOOL_PATH: settings.spoolPath,
        PGBACKREST_REPO1_TYPE: "s3",
        PGBACKREST_REPO1_PATH: "/pg/main",
        PGBACKREST_REPO1_S3_BUCKET: "backups",
        PGBACKREST_REPO1_S3_ENDPOINT: "minio.db.svc",
        PGBACKREST_REPO1_STORAGE_PORT: "9000",
        PGBACKREST_REPO1_S3_REGION: "eu-west-3",
        PGBACKREST_REPO1_S3_URI_STYLE: "path",
        PGBACKREST_REPO1_STORAGE_VERIFY_TLS: "y",
        PGBACKREST_REPO1_CIPHER_TYPE: "aes-256-cbc",
        PGBACKREST_REPO2_TYPE: "posix",
        PGBACKREST_REPO2_PATH: "/mnt/nfs/pg",
      })
      assert.notProperty(env, "PGBACKREST_REPO1_S3_KEY_TYPE", "static keys are given: no auto credentials")

      // Exactly the three secret values, each Redacted.
      const secrets = Object.entries(env).filter(([, value]) => Redacted.isRedacted(value))
      assert.deepStrictEqual(secrets.map(([key]) => key).sort(), [
        "PGBACKREST_REPO1_CIPHER_PASS",
        "PGBACKREST_REPO1_S3_KEY",
        "PGBACKREST_REPO1_S3_KEY_SECRET",
      ])
      const revealed = (key: string) => {
        const value = env[key]
        return value !== undefined && Redacted.isRedacted(value) ? Redacted.value(value) : undefined
      }
      assert.strictEqual(revealed("PGBACKREST_REPO1_S3_KEY"), ACCESS_KEY_ID)
      assert.strictEqual(revealed("PGBACKREST_REPO1_S3_KEY_SECRET"), SECRET_ACCESS_KEY)
      assert.strictEqual(revealed("PGBACKREST_REPO1_CIPHER_PASS"), ENCRYPTION_PASS)
      const printed = `${JSON.stringify(resolved)} ${String(env.PGBACKREST_REPO1_S3_KEY_SECRET)}`
      for (const value of [ACCESS_KEY_ID, SECRET_ACCESS_KEY, ENCRYPTION_PASS, CA_PEM.split("\n")[1] ?? ""]) {
        assert.notInclude(printed, value)
      }

      // The CA bundle is a file in the scratch directory, readable by its owner only.
      const caFile = env.PGBACKREST_REPO1_STORAGE_CA_FILE
      assert.isString(caFile)
      if (typeof caFile === "string") {
        assert.strictEqual(path.dirname(caFile), path.join(settings.runDir, "ca"))
        assert.strictEqual(yield* Effect.promise(() => fs.readFile(caFile, "utf8")), CA_PEM)
        const stat = yield* Effect.promise(() => fs.stat(caFile))
        assert.strictEqual(stat.mode & 0o777, 0o600)
        // No temporary file is left beside it.
        assert.deepStrictEqual(yield* Effect.promise(() => fs.readdir(path.dirname(caFile))), [
          path.basename(caFile),
        ])
      }
    }).pipe(Effect.provide(TestLayer)),
  )

  it.scoped("an invalid Stanza is InvalidRequest naming the Stanza and the field", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(resolve("broken"))
      assert.strictEqual(error._tag, "InvalidRequest")
      if (error._tag === "InvalidRequest") {
        assert.isTrue(
          error.field.startsWith("Stanza db/broken spec.stanzaConfiguration"),
          `field was: ${error.field}`,
        )
        assert.strictEqual(error.field, "Stanza db/broken spec.stanzaConfiguration.s3Repositories[0].bucket")
      }
    }).pipe(Effect.provide(TestLayer)),
  )

  it.scoped("a missing Stanza is NotFound", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(resolve("nope"))
      assert.strictEqual(error._tag, "NotFound")
      assert.include(error.message, "Stanza db/nope")
    }).pipe(Effect.provide(TestLayer)),
  )

  it.scoped("a missing Secret is NotFound naming the Secret and the Stanza field that refers to it", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(resolve("no-secret"))
      assert.strictEqual(error._tag, "NotFound")
      assert.include(error.message, "Secret db/absent")
      assert.include(
        error.message,
        "Stanza db/no-secret spec.stanzaConfiguration.s3Repositories[0].secretRef.accessKeyId",
      )
    }).pipe(Effect.provide(TestLayer)),
  )

  it.scoped("a missing key is InvalidRequest naming the key and the field, never a value", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(resolve("no-key"))
      assert.strictEqual(error._tag, "InvalidRequest")
      if (error._tag === "InvalidRequest") {
        assert.strictEqual(
          error.field,
          "Stanza db/no-key spec.stanzaConfiguration.s3Repositories[0].secretRef.accessKeyId",
        )
        assert.include(error.reason, '"AWS_ACCESS_KEY_ID"')
        assert.include(error.reason, "Secret db/s3-creds")
      }
      for (const value of [ACCESS_KEY_ID, SECRET_ACCESS_KEY, ENCRYPTION_PASS]) {
        assert.notInclude(error.message, value)
      }
    }).pipe(Effect.provide(TestLayer)),
  )

  it.scoped("reuses a resolution for 10 seconds, then reads the Stanza again and sees an edit", () =>
    Effect.gen(function* () {
      const kubernetes = yield* Kubernetes
      const first = yield* resolve("main")
      const second = yield* resolve("main")
      assert.strictEqual(yield* stanzaReads, 1)
      assert.strictEqual(second, first)

      yield* kubernetes.replace(
        Resources.stanza,
        "db",
        "main",
        stanza("main", { ...mainConfiguration, processMax: 4 }),
      )
      yield* TestClock.adjust("9 seconds")
      assert.isUndefined((yield* resolve("main")).env.PGBACKREST_PROCESS_MAX)
      assert.strictEqual(yield* stanzaReads, 1)

      yield* TestClock.adjust("2 seconds")
      assert.strictEqual((yield* resolve("main")).env.PGBACKREST_PROCESS_MAX, "4")
      assert.strictEqual(yield* stanzaReads, 2)
    }).pipe(Effect.provide(TestLayer)),
  )

  it.scoped("does not cache a failure: the next call reads the Stanza again", () =>
    Effect.gen(function* () {
      const kubernetes = yield* Kubernetes
      const error = yield* Effect.flip(resolve("late"))
      assert.strictEqual(error._tag, "NotFound")
      yield* kubernetes.create(
        Resources.stanza,
        "db",
        stanza("late", { name: "late", posixRepositories: [{ repoPath: "/late" }] }),
      )
      // No clock move at all: even within the same millisecond, the failure must not be served again.
      const resolved = yield* resolve("late")
      assert.strictEqual(resolved.env.PGBACKREST_STANZA, "late")
      assert.strictEqual(yield* stanzaReads, 2)
    }).pipe(Effect.provide(TestLayer)),
  )

  it.scoped("resolves Stanzas sharing a CA bundle concurrently", () =>
    Effect.gen(function* () {
      const kubernetes = yield* Kubernetes
      const names = ["ca-1", "ca-2", "ca-3", "ca-4"]
      for (const name of names) {
        yield* kubernetes.create(Resources.stanza, "db", stanza(name, { ...mainConfiguration, name }))
      }
      const resolved = yield* Effect.all(names.map(resolve), { concurrency: "unbounded" })
      const files = new Set(resolved.map((r) => r.env.PGBACKREST_REPO1_STORAGE_CA_FILE))
      assert.strictEqual(files.size, 1, "the same PEM is written to the same file")
    }).pipe(Effect.provide(TestLayer)),
  )
})
