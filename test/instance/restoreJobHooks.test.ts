import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Layer, Ref } from "effect"
import { Kubernetes } from "../../src/adapters/kubernetes.js"
import { PgBackRest } from "../../src/adapters/pgBackRest.js"
import { Secrets } from "../../src/adapters/secrets.js"
import { decodeInfo } from "../../src/domain/pgbackrestInfo.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { RestoreJob } from "../../src/instance/restoreJobHooks.js"
import { InstanceSettings } from "../../src/instance/settings.js"
import { StanzaResolver } from "../../src/instance/stanzaResolver.js"
import { instanceSettingsIn, unused } from "../fixtures/pgbackrest-info/fakes.js"
import { infoJson } from "../fixtures/pgbackrest-info/load.js"
import { tempDir } from "../support/tempDir.js"

const stanza = {
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: "origin-stanza", namespace: "db" },
  spec: { stanzaConfiguration: { name: "main", posixRepositories: [{ repoPath: "/repo" }] } },
}

const restoredCluster = (extra: Record<string, unknown> = {}) => ({
  metadata: { name: "restored", namespace: "db" },
  spec: {
    bootstrap: { recovery: { source: "origin" } },
    externalClusters: [
      { name: "origin", plugin: { name: PLUGIN_NAME, parameters: { stanzaRef: "origin-stanza" } } },
    ],
    ...extra,
  },
})

interface Call {
  readonly label: string
  readonly repository: number
  readonly delta: unknown
}

/** The service over a fake pgBackRest whose restore writes a tiny PGDATA, as the real one would. */
const setup = Effect.gen(function* () {
  const dir = yield* tempDir()
  const settings = instanceSettingsIn(dir)
  const calls = yield* Ref.make<ReadonlyArray<Call>>([])
  const pgbackrest = PgBackRest.make({
    restore: (env, backupSet) =>
      Ref.update(calls, (all) => [...all, { ...backupSet, delta: env.PGBACKREST_DELTA }]).pipe(
        Effect.zipRight(
          Effect.sync(() => {
            fs.mkdirSync(path.join(settings.pgData, "pg_wal"), { recursive: true })
            fs.writeFileSync(path.join(settings.pgData, "PG_VERSION"), "15\n")
            fs.writeFileSync(path.join(settings.pgData, "pg_wal", "000000010000000000000002"), "wal")
          }),
        ),
      ),
    run: unused,
    backup: unused,
    expire: unused,
    version: unused,
    stanzaCreate: unused,
    archivePush: unused,
    archiveGet: unused,
    check: unused,
    info: () => decodeInfo(infoJson("two-repositories")),
  })
  const layer = RestoreJob.Default.pipe(
    Layer.provide(StanzaResolver.Default),
    Layer.provide(Secrets.Default),
    Layer.provide(
      Layer.mergeAll(
        Kubernetes.Fake([stanza]),
        Layer.succeed(InstanceSettings, settings),
        Layer.succeed(PgBackRest, pgbackrest),
        NodeContext.layer,
      ),
    ),
  )
  const service = yield* Effect.provide(RestoreJob, layer)
  const restore = (cluster: unknown) =>
    service.restore({ clusterDefinition: Buffer.from(JSON.stringify(cluster)) }).pipe(Effect.either)
  return { settings, calls, restore }
})

describe("RestoreJobHooks.Restore", () => {
  it.scoped("restores the chosen set with no delta, and answers promote + restore_command", () =>
    Effect.gen(function* () {
      const { calls, restore } = yield* setup
      const answer = yield* restore(restoredCluster())
      assert.isTrue(Either.isRight(answer))
      if (Either.isRight(answer)) {
        assert.include(answer.right.restoreConfig, "recovery_target_action = promote")
        assert.include(answer.right.restoreConfig, "/controller/manager wal-restore")
        assert.deepStrictEqual(answer.right.envs, [])
      }
      const [call] = yield* Ref.get(calls)
      assert.strictEqual(call?.delta, "n")
      assert.isAbove(call?.label.length ?? 0, 0)
      assert.oneOf(call?.repository, [1, 2])
    }),
  )

  it.scoped("refuses a non-empty PGDATA and touches nothing", () =>
    Effect.gen(function* () {
      const { settings, calls, restore } = yield* setup
      fs.mkdirSync(settings.pgData, { recursive: true })
      fs.writeFileSync(path.join(settings.pgData, "keep-me"), "precious")
      const answer = yield* restore(restoredCluster())
      assert.isTrue(Either.isLeft(answer) && answer.left._tag === "FailedPrecondition")
      if (Either.isLeft(answer)) {
        assert.include(answer.left.message, settings.pgData)
      }
      assert.deepStrictEqual(yield* Ref.get(calls), [])
      assert.deepStrictEqual(fs.readdirSync(settings.pgData), ["keep-me"])
      assert.strictEqual(fs.readFileSync(path.join(settings.pgData, "keep-me"), "utf8"), "precious")
    }),
  )

  it.scoped("moves pg_wal to the WAL volume and links it back when the Cluster has walStorage", () =>
    Effect.gen(function* () {
      const { settings, restore } = yield* setup
      const answer = yield* restore(restoredCluster({ walStorage: { size: "1Gi" } }))
      assert.isTrue(Either.isRight(answer))
      const link = path.join(settings.pgData, "pg_wal")
      assert.strictEqual(fs.readlinkSync(link), path.join(settings.walVolume, "pg_wal"))
      assert.strictEqual(
        fs.readFileSync(path.join(settings.walVolume, "pg_wal", "000000010000000000000002"), "utf8"),
        "wal",
      )
    }),
  )

  it.scoped("names the field when the recovery source is not this plugin's", () =>
    Effect.gen(function* () {
      const { calls, restore } = yield* setup
      const answer = yield* restore({ metadata: { name: "x", namespace: "db" }, spec: {} })
      assert.isTrue(Either.isLeft(answer) && answer.left._tag === "InvalidRequest")
      if (Either.isLeft(answer) && answer.left._tag === "InvalidRequest") {
        assert.strictEqual(answer.left.field, "spec.bootstrap.recovery.source")
      }
      assert.deepStrictEqual(yield* Ref.get(calls), [])
    }),
  )
})
