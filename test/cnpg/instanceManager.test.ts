import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Exit } from "effect"
import { Status } from "nice-grpc"
import * as InstanceManager from "../../src/cnpg/instanceManager.js"
import { BackupCapability_RPC_Type } from "../../src/generated/backup.js"
import { PluginCapability_Service_Type as Service } from "../../src/generated/identity.js"
import { MetricsCapability_RPC_Type } from "../../src/generated/metrics.js"
import { RestoreJobHooksCapability_Kind } from "../../src/generated/restore_job.js"
import { WALCapability_RPC_Type } from "../../src/generated/wal.js"
import { tempDir } from "../support/tempDir.js"
import { type FakePluginOptions, fakePlugin } from "./fakePlugin.js"

const { TYPE_ARCHIVE_WAL: ARCHIVE, TYPE_RESTORE_WAL: RESTORE } = WALCapability_RPC_Type

const cluster = (
  plugins: ReadonlyArray<Record<string, unknown>>,
  externalPlugins: ReadonlyArray<string> = [],
) => ({
  metadata: { name: "pg", namespace: "db" },
  spec: {
    plugins,
    externalClusters: externalPlugins.map((name) => ({ name: `source-${name}`, plugin: { name } })),
  },
})

/** Fake plugins on their sockets in a fresh directory; every RPC they receive lands in `calls`. */
const plugins = (...options: ReadonlyArray<FakePluginOptions>) =>
  Effect.gen(function* () {
    const dir = yield* tempDir()
    const calls: Array<string> = []
    for (const option of options) yield* fakePlugin(dir, option, calls)
    return { dir, calls }
  })

const walPlugin = (
  name: string,
  walRpcs: ReadonlyArray<WALCapability_RPC_Type>,
  extra: Partial<FakePluginOptions> = {},
) => ({ name, services: [Service.TYPE_WAL_SERVICE], walRpcs, ...extra }) satisfies FakePluginOptions

describe("LoadPlugin and WAL.Archive (manager wal-archive)", () => {
  it.scopedLive(
    "loads on a new connection per invocation, in CloudNativePG's order, then probes and calls",
    () =>
      Effect.gen(function* () {
        const { dir, calls } = yield* plugins({
          name: "a.example",
          services: [Service.TYPE_METRICS, Service.TYPE_BACKUP_SERVICE, Service.TYPE_WAL_SERVICE],
          walRpcs: [ARCHIVE],
          backupRpcs: [BackupCapability_RPC_Type.TYPE_BACKUP],
          metricsRpcs: [MetricsCapability_RPC_Type.TYPE_METRICS],
        })
        const archive = InstanceManager.archiveWal({
          pluginDir: dir,
          cluster: cluster([{ name: "a.example", isWALArchiver: true }]),
          walPath: "/pgdata/pg_wal/000000010000000000000001",
        })
        assert.deepStrictEqual(yield* archive, { called: ["a.example"] })
        const oneInvocation = [
          "a.example Identity/GetPluginMetadata",
          "a.example Identity/GetPluginCapabilities",
          // WAL before Backup before Metrics, whatever order they were advertised in.
          "a.example WAL/GetCapabilities",
          "a.example Backup/GetCapabilities",
          "a.example Metrics/GetCapabilities",
          "a.example Identity/Probe",
          "a.example WAL/Archive",
        ]
        assert.deepStrictEqual(calls, oneInvocation)
        // The next segment is a new process: the whole handshake again.
        yield* archive
        assert.deepStrictEqual(calls, [...oneInvocation, ...oneInvocation])
      }),
  )

  it.scopedLive("calls only the enabled plugins that list ARCHIVE_WAL, in name order", () =>
    Effect.gen(function* () {
      const { dir, calls } = yield* plugins(
        walPlugin("b.example", [ARCHIVE]),
        walPlugin("a.example", [RESTORE]),
        walPlugin("c.example", [ARCHIVE]),
        walPlugin("d.example", [ARCHIVE]),
      )
      const result = yield* InstanceManager.archiveWal({
        pluginDir: dir,
        cluster: cluster([
          { name: "d.example", enabled: false },
          { name: "c.example" },
          { name: "a.example" },
          { name: "b.example", isWALArchiver: true },
        ]),
        walPath: "/w",
      })
      assert.deepStrictEqual(result.called, ["b.example", "c.example"])
      assert.deepStrictEqual(
        calls.filter((call) => call.endsWith("WAL/Archive")),
        ["b.example WAL/Archive", "c.example WAL/Archive"],
      )
      // A disabled plugin is not even loaded.
      assert.isFalse(calls.some((call) => call.startsWith("d.example")))
    }),
  )

  it.scopedLive(
    "a designated WAL archiver without a socket, or answering another name, fails the command",
    () =>
      Effect.gen(function* () {
        const { dir, calls } = yield* plugins(
          walPlugin("a.example", [ARCHIVE], { metadataName: "other.example" }),
        )
        for (const name of ["missing.example", "a.example"]) {
          const error = yield* Effect.flip(
            InstanceManager.archiveWal({
              pluginDir: dir,
              cluster: cluster([{ name, isWALArchiver: true }]),
              walPath: "/w",
            }),
          )
          assert.strictEqual(error.reason, "wal archive plugin is not available")
        }
        assert.isFalse(calls.some((call) => call.endsWith("WAL/Archive")))
      }),
  )
})

describe("WAL.Restore (manager wal-restore)", () => {
  it.scopedLive("never calls a plugin without RESTORE_WAL: the file is then unavailable", () =>
    Effect.gen(function* () {
      const { dir, calls } = yield* plugins(walPlugin("a.example", [ARCHIVE]))
      const error = yield* Effect.flip(
        InstanceManager.restoreWal({
          pluginDir: dir,
          cluster: cluster([{ name: "a.example" }]),
          walName: "000000010000000000000001",
          destination: "/pgdata/pg_wal/RECOVERYXLOG",
        }),
      )
      assert.strictEqual(error.code, Status.NOT_FOUND)
      assert.isFalse(calls.some((call) => call.endsWith("WAL/Restore")))
    }),
  )

  it.scopedLive("tries the next plugin on any error, spec.plugins and external clusters alike", () =>
    Effect.gen(function* () {
      const { dir, calls } = yield* plugins(
        walPlugin("a.example", [RESTORE], { restoreFails: Status.UNAVAILABLE }),
        walPlugin("b.example", [RESTORE], { restoreFails: Status.NOT_FOUND }),
        walPlugin("c.example", [RESTORE]),
      )
      const restore = (plugins: ReadonlyArray<string>, external: ReadonlyArray<string>) =>
        InstanceManager.restoreWal({
          pluginDir: dir,
          cluster: cluster(
            plugins.map((name) => ({ name })),
            external,
          ),
          walName: "000000010000000000000001",
          destination: "/pgdata/pg_wal/RECOVERYXLOG",
        })
      assert.deepStrictEqual(yield* restore(["a.example", "b.example"], ["c.example"]), {
        called: ["a.example", "b.example", "c.example"],
      })
      const exit = yield* Effect.exit(restore(["a.example", "b.example"], []))
      assert.isTrue(Exit.isFailure(exit))
      const failure = yield* Effect.either(restore(["b.example"], []))
      assert.isTrue(Either.isLeft(failure) && failure.left.code === Status.NOT_FOUND)
      assert.strictEqual(calls.filter((call) => call === "c.example WAL/Restore").length, 1)
    }),
  )
})

describe("Backup, RestoreJobHooks and Metrics gates", () => {
  const backup = (dir: string, name: string) =>
    InstanceManager.takeBackup({
      pluginDir: dir,
      pluginName: name,
      cluster: cluster([{ name }]),
      backup: { metadata: { name: "b" } },
      parameters: {},
    })

  it.scopedLive("Backup.Backup needs BACKUP_SERVICE and TYPE_BACKUP", () =>
    Effect.gen(function* () {
      const { dir, calls } = yield* plugins(
        { name: "no-service.example", services: [Service.TYPE_WAL_SERVICE], walRpcs: [ARCHIVE] },
        { name: "no-rpc.example", services: [Service.TYPE_BACKUP_SERVICE], backupRpcs: [] },
        {
          name: "yes.example",
          services: [Service.TYPE_BACKUP_SERVICE],
          backupRpcs: [BackupCapability_RPC_Type.TYPE_BACKUP],
        },
      )
      assert.strictEqual((yield* Effect.flip(backup(dir, "no-service.example"))).code, Status.UNIMPLEMENTED)
      assert.strictEqual((yield* Effect.flip(backup(dir, "no-rpc.example"))).code, Status.UNIMPLEMENTED)
      assert.strictEqual((yield* Effect.flip(backup(dir, "absent.example"))).code, Status.UNAVAILABLE)
      assert.strictEqual((yield* backup(dir, "yes.example")).backupId, "fake")
      assert.deepStrictEqual(
        calls.filter((call) => call.endsWith("Backup/Backup")),
        ["yes.example Backup/Backup"],
      )
    }),
  )

  it.scopedLive("RestoreJobHooks.Restore goes to the first plugin with KIND_RESTORE only", () =>
    Effect.gen(function* () {
      const { dir, calls } = yield* plugins(
        { name: "a.example", services: [Service.TYPE_RESTORE_JOB], restoreJobKinds: [] },
        {
          name: "b.example",
          services: [Service.TYPE_RESTORE_JOB],
          restoreJobKinds: [RestoreJobHooksCapability_Kind.KIND_RESTORE],
        },
        {
          name: "c.example",
          services: [Service.TYPE_RESTORE_JOB],
          restoreJobKinds: [RestoreJobHooksCapability_Kind.KIND_RESTORE],
        },
      )
      const restore = (names: ReadonlyArray<string>) =>
        InstanceManager.restoreJob({ pluginDir: dir, cluster: cluster([], names) })
      yield* restore(["c.example", "a.example", "b.example"])
      assert.deepStrictEqual(
        calls.filter((call) => call.endsWith("RestoreJobHooks/Restore")),
        ["b.example RestoreJobHooks/Restore"],
      )
      assert.strictEqual((yield* Effect.flip(restore(["a.example"]))).code, Status.UNIMPLEMENTED)
    }),
  )

  it.scopedLive("Metrics are asked only of plugins that list METRICS", () =>
    Effect.gen(function* () {
      const { dir, calls } = yield* plugins(
        { name: "a.example", services: [Service.TYPE_METRICS], metricsRpcs: [] },
        {
          name: "b.example",
          services: [Service.TYPE_METRICS],
          metricsRpcs: [MetricsCapability_RPC_Type.TYPE_METRICS],
        },
      )
      const collected = yield* InstanceManager.collectMetrics({
        pluginDir: dir,
        cluster: cluster([{ name: "a.example" }, { name: "b.example" }]),
      })
      assert.deepStrictEqual(
        collected.map((entry) => entry.plugin),
        ["b.example"],
      )
      assert.isFalse(calls.some((call) => call.startsWith("a.example Metrics/Define")))
    }),
  )
})
