// Part of `npm run bench`: a full backup of a pgbench scale-10 database through the plugin (Backup.Backup
// over the sidecar's socket, as the instance manager sends it) against bare `pgbackrest backup` to the
// same repository, and the restore of each through the plugin (RestoreJobHooks) against bare
// `pgbackrest restore`. Merges its figures into bench/report.json.
import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Schedule, Schema } from "effect"
import { backupResource } from "../src/cli/pluginClient.js"
import { restoreJob } from "../src/cli/restoreClient.js"
import * as InstanceManager from "../src/cnpg/instanceManager.js"
import { PLUGIN_NAME } from "../src/domain/plugin.js"
import { makeDir, makeTempDir, postgresAccount, rigError } from "../test/rig/exec.js"
import { makePgBackRestEnv, PostgresCluster, S3Endpoint } from "../test/rig/index.js"
import { preparePlugin, restoreSidecarFor, sidecarFor } from "../test/rig/plugin.js"
import { barePgBackRest } from "./barePgBackRest.js"
import { type BackupRestoreSection, mergeReport } from "./report.js"
import { say } from "./stats.js"

const SCALE = Number(process.env.BENCH_PGBENCH_SCALE ?? "10")
/** preparePlugin writes the Cluster manifest as JSON. */
const ClusterJson = Schema.parseJson(Schema.Record({ key: Schema.String, value: Schema.Unknown }))

const seconds = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const started = performance.now()
    const value = yield* effect
    return { value, seconds: (performance.now() - started) / 1000 }
  })

const program = Effect.gen(function* () {
  const account = yield* postgresAccount
  const s3 = yield* S3Endpoint.make({ bucket: "bench-backup" })
  const dirs = yield* preparePlugin({ s3, posix: false })
  const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: dirs.archiveCommand })
  const sidecar = yield* sidecarFor(dirs, pg)
  yield* sidecar.start()
  yield* say(`pgbench -i -s ${SCALE} ...`)
  yield* pg.runAsPostgres(`${pg.binDir}/pgbench`, [
    "-i",
    "-q",
    "-s",
    String(SCALE),
    "-h",
    pg.socketDir,
    "-p",
    String(pg.port),
    "postgres",
  ])
  const size = yield* pg.psql("SELECT pg_size_pretty(pg_database_size('postgres'))")
  // The bare backup runs first and needs the stanza, which the plugin creates on its first archive: a
  // small pgbench may not have filled a segment yet, so complete one and wait for it to be archived.
  yield* pg.switchWal()
  yield* pg.psql("SELECT archived_count FROM pg_stat_archiver").pipe(
    Effect.filterOrFail(
      (count) => Number(count) > 0,
      () => new Error("no segment archived yet"),
    ),
    Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.intersect(Schedule.recurs(300)))),
  )

  const cluster = yield* Schema.decodeUnknown(ClusterJson)(fs.readFileSync(dirs.clusterFile, "utf8"))
  // Bare pgBackRest: the same options as the plugin's, to the same repository.
  const env = {
    ...(yield* makePgBackRestEnv(pg)),
    ...S3Endpoint.pgbackrestRepoEnv(s3, 1, dirs.s3RepoPath),
    PGBACKREST_STANZA: "main",
    PGBACKREST_START_FAST: "y",
    PGBACKREST_DELTA: "y",
    PGBACKREST_LOG_LEVEL_FILE: "off",
  }
  // As `manager backup` does: a new connection, LoadPlugin, the Backup gates, Probe, Backup.Backup.
  const pluginBackup = (name: string) =>
    InstanceManager.takeBackup({
      pluginDir: sidecar.pluginDir,
      pluginName: PLUGIN_NAME,
      cluster,
      backup: backupResource(cluster, { name, parameters: {} }),
      parameters: {},
    }).pipe(Effect.orDie)
  const bareBackup = barePgBackRest(["backup", "--repo=1", "--type=full"], env, account)
  // Alternate the two (bare, plugin, plugin, bare) after a checkpoint each, so that neither pays alone
  // for flushing pgbench's freshly written pages or profits from a warm cache.
  yield* pg.psql("CHECKPOINT")
  const plugin: Array<number> = []
  const bareTimes: Array<number> = []
  let label = ""
  for (const order of [
    ["bare", "plugin"],
    ["plugin", "bare"],
  ] as const) {
    for (const which of order) {
      yield* pg.psql("CHECKPOINT")
      if (which === "plugin") {
        const run = yield* seconds(pluginBackup(`bench-${plugin.length}`))
        plugin.push(run.seconds)
        label = run.value.backupId
      } else {
        bareTimes.push((yield* seconds(bareBackup)).seconds)
      }
    }
  }
  const mean = (values: ReadonlyArray<number>) => values.reduce((a, b) => a + b, 0) / values.length
  const viaPlugin = { seconds: mean(plugin), value: { backupId: label } }
  const bare = { seconds: mean(bareTimes) }

  // Restore of the plugin's backup: through the restore sidecar, then bare into another directory.
  const restoreDir = yield* makeTempDir("bench-restore-", { owner: account, mode: 0o755 })
  const viaPluginData = yield* makeDir(path.join(restoreDir, "plugin"), { owner: account, mode: 0o700 })
  const bareData = yield* makeDir(path.join(restoreDir, "bare"), { owner: account, mode: 0o700 })
  const { sidecar: restoreSidecar } = yield* restoreSidecarFor(dirs, viaPluginData)
  yield* restoreSidecar.start()
  const restoredViaPlugin = yield* seconds(
    restoreJob(restoreSidecar.pluginDir, dirs.restoredClusterFile).pipe(
      Effect.mapError((e) => rigError("restore", e.message)),
    ),
  )
  const restoredBare = yield* seconds(
    barePgBackRest(
      ["restore", `--set=${viaPlugin.value.backupId}`, "--repo=1", "--type=none", `--pg1-path=${bareData}`],
      { ...env, PGBACKREST_DELTA: "n" },
      account,
    ),
  )

  const report: BackupRestoreSection = {
    database: `pgbench scale ${SCALE} (${size})`,
    backup: {
      pluginSeconds: viaPlugin.seconds,
      bareSeconds: bare.seconds,
      ratio: viaPlugin.seconds / bare.seconds,
    },
    restore: {
      pluginSeconds: restoredViaPlugin.seconds,
      bareSeconds: restoredBare.seconds,
      ratio: restoredViaPlugin.seconds / restoredBare.seconds,
    },
  }
  yield* say(
    `backup  plugin ${report.backup.pluginSeconds.toFixed(2)} s | bare ${report.backup.bareSeconds.toFixed(2)} s | ratio ${report.backup.ratio.toFixed(3)}`,
  )
  yield* say(
    `restore plugin ${report.restore.pluginSeconds.toFixed(2)} s | bare ${report.restore.bareSeconds.toFixed(2)} s | ratio ${report.restore.ratio.toFixed(3)}`,
  )
  yield* mergeReport({ backupRestore: report })
  yield* say("merged into bench/report.json")
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(NodeContext.layer)))
