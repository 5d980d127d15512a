import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Layer, Redacted, Ref, TestClock } from "effect"
import { Kubernetes, Resources } from "../../src/adapters/kubernetes.js"
import { Secrets } from "../../src/adapters/secrets.js"
import { Unavailable } from "../../src/domain/errors.js"

const ACCESS_KEY_ID = "AKIA-FIRST-VALUE"
const SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY"
const ROTATED_SECRET_ACCESS_KEY = "rotated-9f8e7d6c5b4a"
const FIELD = "spec.stanzaConfiguration.s3Repositories[0].secretRef.secretAccessKey"

const s3Secret = (secretAccessKey: string) => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "s3-creds", namespace: "db" },
  stringData: { ACCESS_KEY_ID, ACCESS_SECRET_KEY: secretAccessKey },
})

/** Counts Secret reads reaching Kubernetes; `outage` makes them fail as an unreachable API would. */
class Calls extends Effect.Service<Calls>()("test/SecretReads", {
  effect: Effect.all({ count: Ref.make(0), outage: Ref.make(false) }),
}) {}

/** The in-memory Kubernetes, with getSecret counted. */
const CountingKubernetes = Layer.effect(
  Kubernetes,
  Effect.gen(function* () {
    const inner = yield* Kubernetes
    const calls = yield* Calls
    return new Kubernetes({
      ...inner,
      getSecret: (namespace: string, name: string) =>
        Effect.gen(function* () {
          yield* Ref.update(calls.count, (n) => n + 1)
          if (yield* Ref.get(calls.outage)) {
            return yield* new Unavailable({ what: "Kubernetes API", reason: "connection refused" })
          }
          return yield* inner.getSecret(namespace, name)
        }),
    })
  }),
).pipe(Layer.provide(Kubernetes.Fake([s3Secret(SECRET_ACCESS_KEY)])))

const TestLayer = Secrets.Default.pipe(
  Layer.provideMerge(CountingKubernetes),
  Layer.provideMerge(Calls.Default),
)

const reads = Effect.flatMap(Calls, (calls) => Ref.get(calls.count))

const rotate = Effect.flatMap(Kubernetes, (kubernetes) =>
  kubernetes.replace(Resources.secret, "db", "s3-creds", s3Secret(ROTATED_SECRET_ACCESS_KEY)),
)

const assertNoSecretValue = (message: string) => {
  for (const value of [ACCESS_KEY_ID, SECRET_ACCESS_KEY, ROTATED_SECRET_ACCESS_KEY]) {
    assert.notInclude(message, value)
  }
}

describe("Secrets", () => {
  it.effect("resolves a key of a Secret to a Redacted value", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const value = yield* secrets.resolve("db", { name: "s3-creds", key: "ACCESS_SECRET_KEY" }, FIELD)
      assert.strictEqual(Redacted.value(value), SECRET_ACCESS_KEY)
      assert.strictEqual(String(value), "<redacted>")
      assertNoSecretValue(JSON.stringify(value))
    }).pipe(Effect.provide(TestLayer)),
  )

  it.effect("a missing Secret is NotFound naming the Secret, its namespace and the Stanza field", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const error = yield* Effect.flip(
        secrets.resolve("db", { name: "absent", key: "ACCESS_SECRET_KEY" }, FIELD),
      )
      assert.strictEqual(error._tag, "NotFound")
      assert.strictEqual(error.message, `Secret db/absent not found: referenced by ${FIELD}`)
    }).pipe(Effect.provide(TestLayer)),
  )

  it.effect("a missing key is InvalidRequest on the field, listing the keys that exist, no values", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const error = yield* Effect.flip(secrets.resolve("db", { name: "s3-creds", key: "SECRET_KEY" }, FIELD))
      assert.strictEqual(error._tag, "InvalidRequest")
      if (error._tag === "InvalidRequest") {
        assert.strictEqual(error.field, FIELD)
        assert.include(error.reason, 'Secret db/s3-creds has no key "SECRET_KEY"')
        assert.include(error.reason, "ACCESS_KEY_ID, ACCESS_SECRET_KEY")
      }
      assertNoSecretValue(error.message)
      assertNoSecretValue(JSON.stringify(error))
    }).pipe(Effect.provide(TestLayer)),
  )

  it.effect("a key named like an Object property is still missing", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const error = yield* Effect.flip(secrets.resolve("db", { name: "s3-creds", key: "constructor" }, FIELD))
      assert.strictEqual(error._tag, "InvalidRequest")
    }).pipe(Effect.provide(TestLayer)),
  )

  it.effect("reads within the TTL hit Kubernetes once; after it, a rotated value is seen", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const ref = { name: "s3-creds", key: "ACCESS_SECRET_KEY" }
      yield* secrets.resolve("db", ref, FIELD)
      yield* secrets.resolve("db", { name: "s3-creds", key: "ACCESS_KEY_ID" }, FIELD)
      assert.strictEqual(yield* reads, 1)

      yield* rotate
      yield* TestClock.adjust("29 seconds")
      assert.strictEqual(Redacted.value(yield* secrets.resolve("db", ref, FIELD)), SECRET_ACCESS_KEY)
      assert.strictEqual(yield* reads, 1)

      yield* TestClock.adjust("2 seconds")
      assert.strictEqual(Redacted.value(yield* secrets.resolve("db", ref, FIELD)), ROTATED_SECRET_ACCESS_KEY)
      assert.strictEqual(yield* reads, 2)
    }).pipe(Effect.provide(TestLayer)),
  )

  it.effect("a missing Secret is remembered for a second only: created right after, it is found", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const kubernetes = yield* Kubernetes
      const ref = { name: "late", key: "password" }
      yield* Effect.flip(secrets.resolve("db", ref, FIELD))
      yield* Effect.flip(secrets.resolve("db", ref, FIELD))
      assert.strictEqual(yield* reads, 1)
      yield* kubernetes.create(Resources.secret, "db", {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "late" },
        stringData: { password: "pw" },
      })
      yield* TestClock.adjust("1100 millis")
      assert.strictEqual(Redacted.value(yield* secrets.resolve("db", ref, FIELD)), "pw")
    }).pipe(Effect.provide(TestLayer)),
  )

  it.effect("an API outage is not cached: the next call asks again", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const calls = yield* Calls
      const ref = { name: "s3-creds", key: "ACCESS_KEY_ID" }
      yield* Ref.set(calls.outage, true)
      const error = yield* Effect.flip(secrets.resolve("db", ref, FIELD))
      assert.strictEqual(error._tag, "Unavailable")
      yield* Ref.set(calls.outage, false)
      assert.strictEqual(Redacted.value(yield* secrets.resolve("db", ref, FIELD)), ACCESS_KEY_ID)
      assert.strictEqual(yield* reads, 2)
    }).pipe(Effect.provide(TestLayer)),
  )

  it.effect("the TTL comes from CNPG_PGBACKREST_SECRETS_CACHE_TTL", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const ref = { name: "s3-creds", key: "ACCESS_SECRET_KEY" }
      yield* secrets.resolve("db", ref, FIELD)
      yield* rotate
      yield* TestClock.adjust("6 seconds")
      assert.strictEqual(Redacted.value(yield* secrets.resolve("db", ref, FIELD)), ROTATED_SECRET_ACCESS_KEY)
      assert.strictEqual(yield* reads, 2)
    }).pipe(
      Effect.provide(TestLayer),
      Effect.withConfigProvider(
        ConfigProvider.fromMap(new Map([["CNPG_PGBACKREST_SECRETS_CACHE_TTL", "5 seconds"]])),
      ),
    ),
  )

  it.effect("invalidate forgets a Secret at once", () =>
    Effect.gen(function* () {
      const secrets = yield* Secrets
      const ref = { name: "s3-creds", key: "ACCESS_SECRET_KEY" }
      yield* secrets.resolve("db", ref, FIELD)
      yield* rotate
      yield* secrets.invalidate("db", "s3-creds")
      assert.strictEqual(Redacted.value(yield* secrets.resolve("db", ref, FIELD)), ROTATED_SECRET_ACCESS_KEY)
    }).pipe(Effect.provide(TestLayer)),
  )
})
