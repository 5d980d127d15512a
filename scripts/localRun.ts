// The README's first command (`npm start`): the plugin's main job on an embedded default. A throwaway
// PostgreSQL 15 whose archive_command goes through the plugin's `instance` sidecar (in local mode, with
// the documented Secret, Stanza and Cluster pointed at a local HTTPS S3 endpoint and a posix
// repository), some writes and WAL switches, a full backup through the plugin, more writes, then a
// new cluster restored through the plugin's `restore` sidecar that must hold every row.
// Everything it starts is stopped and removed at the end, also on Ctrl-C.
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { backupStatusOf, takeBackup } from "../src/cli/pluginClient.js"
import { archivedThrough, archiverStats, restoreCluster } from "../test/e2e/support.js"
import { rigError } from "../test/rig/exec.js"
import { makePgBackRestEnv, PostgresCluster, runPgBackRest, S3Endpoint } from "../test/rig/index.js"
import { preparePlugin, sidecarFor } from "../test/rig/plugin.js"

const SEGMENTS = 10

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const step = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    yield* Effect.sync(() => process.stdout.write(`▸ ${label} ... `))
    const started = performance.now()
    const result = yield* effect
    yield* say(`done (${((performance.now() - started) / 1000).toFixed(1)} s)`)
    return result
  })

const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0

const program = Effect.gen(function* () {
  const s3 = yield* step(
    "starting a local S3 endpoint over HTTPS (s3rver, own CA)",
    S3Endpoint.make({ bucket: "demo" }),
  )
  const dirs = yield* step(
    "writing the documented Secret, Stanza and Cluster (examples/) for this endpoint",
    preparePlugin({ s3 }),
  )
  yield* say(`  manifests: ${dirs.manifestsDir}`)
  const pg = yield* step(
    "starting a throwaway PostgreSQL 15 whose archive_command is `cnpg-pgbackrest client wal-archive`",
    PostgresCluster.make({ archiveMode: "on", archiveCommand: dirs.archiveCommand }),
  )
  const sidecar = yield* sidecarFor(dirs, pg)
  yield* step(`starting the plugin (instance role) on ${dirs.pluginDir}`, sidecar.start())

  yield* pg.psql("CREATE TABLE demo (id bigint PRIMARY KEY, payload text)")
  const latencies: Array<number> = []
  const started = performance.now()
  for (let i = 0; i < SEGMENTS; i++) {
    yield* pg.psql(
      `INSERT INTO demo SELECT g, md5(g::text) FROM generate_series(${i * 20_000 + 1}, ${(i + 1) * 20_000}) g`,
    )
    const switchedAt = performance.now()
    const segment = yield* pg.switchWal()
    yield* archivedThrough(pg, segment)
    latencies.push(performance.now() - switchedAt)
    yield* say(`  wrote 20000 rows, switched WAL: ${segment} archived in ${Math.round(latencies[i] ?? 0)} ms`)
  }
  const elapsed = (performance.now() - started) / 1000
  const stats = yield* archiverStats(pg)

  const env = {
    ...(yield* makePgBackRestEnv(pg)),
    ...S3Endpoint.pgbackrestRepoEnv(s3, 1, dirs.s3RepoPath),
    PGBACKREST_REPO2_PATH: dirs.posixRepo,
    PGBACKREST_STANZA: "main",
  }
  const info = yield* runPgBackRest(["info"], env)
  yield* say("\npgbackrest info (run directly, not through the plugin):")
  yield* say(info.stdout.trimEnd())

  const sorted = [...latencies].sort((a, b) => a - b)
  yield* say("\nArchiving through the plugin:")
  yield* say(`  segments archived by PostgreSQL: ${stats.archived}, failed attempts: ${stats.failed}`)
  yield* say(`  last archived: ${stats.lastArchived}`)
  yield* say(
    `  switch-to-archived latency: median ${Math.round(percentile(sorted, 50))} ms, max ${Math.round(sorted[sorted.length - 1] ?? 0)} ms`,
  )
  yield* say(`  ${SEGMENTS} segments (with 20000-row inserts) in ${elapsed.toFixed(1)} s`)

  const backup = yield* step(
    "taking a full backup through the plugin (`cnpg-pgbackrest client backup`, as the instance manager)",
    takeBackup(sidecar.pluginDir, {
      clusterFile: dirs.clusterFile,
      backupName: "backup-example",
      parameters: {},
    }).pipe(Effect.mapError((error) => rigError("backup", error.message))),
  )
  yield* say("  the Backup's status as the operator would record it:")
  yield* say(JSON.stringify(backupStatusOf(backup), null, 2).replace(/^/gm, "    "))

  yield* pg.psql("INSERT INTO demo SELECT g, 'after the backup' FROM generate_series(1000001, 1005000) g")
  yield* archivedThrough(pg, yield* pg.switchWal())
  yield* say("  wrote 5000 more rows after the backup and archived their WAL")
  const expected = yield* pg.psql("SELECT count(*) FROM demo")

  const restored = yield* step(
    "restoring a new cluster (examples/cluster-restored.yaml) through the restore sidecar, replaying WAL",
    restoreCluster(dirs, {
      name: "restore",
      clusterFile: dirs.restoredClusterFile,
      recovery: ["recovery_target_action = 'promote'"],
      promoteTimeoutMs: 180_000,
    }),
  )
  yield* say(`  RestoreJobHooks.Restore answered:\n${restored.restoreConfig.replace(/^/gm, "    ")}`)
  yield* say(`  restore ${restored.restoreMs} ms, WAL replay to promotion ${restored.recoveryMs} ms`)
  const found = yield* restored.pg.psql("SELECT count(*) FROM demo")
  const after = yield* restored.pg.psql("SELECT count(*) FROM demo WHERE payload = 'after the backup'")
  yield* say(
    `  rows in the source: ${expected}; in the restored cluster: ${found} (${after} written after the backup, replayed from WAL)`,
  )
  if (found !== expected) {
    return yield* Effect.fail(rigError("restore check", `expected ${expected} rows, found ${found}`))
  }
  yield* say("\nstopping the plugin, PostgreSQL and the S3 endpoint; removing their directories")
})

NodeRuntime.runMain(
  program.pipe(
    Effect.onInterrupt(() => say("\ninterrupted: stopping the plugin, PostgreSQL and the S3 endpoint")),
    Effect.scoped,
    Effect.provide(NodeContext.layer),
  ),
)
