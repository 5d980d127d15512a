import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { Status } from "nice-grpc"
import { takeBackup } from "../../src/cli/pluginClient.js"
import { restoreJob } from "../../src/cli/restoreClient.js"
import { makeTempDir, postgresAccount, rigError, withLiveClock } from "../rig/exec.js"
import { runPgBackRest } from "../rig/index.js"
import { type PluginDirs, restoreSidecarFor } from "../rig/plugin.js"
import type { Postgres } from "../rig/postgres.js"
import type { Sidecar } from "../rig/sidecar.js"
import {
  archivedThrough,
  fileTree,
  logRecords,
  restoreCluster,
  restoredFromArchive,
  rowsByPhase,
  startArchivingCluster,
  walRestoreClient,
  writeRestoredCluster,
} from "./support.js"

/**
 * One source cluster for every test of this file, archiving to S3 (1) and posix (2) through its sidecar:
 *   phase A (100 rows) - full backup `first` - phase B - target time T - phase C - full backup `second`.
 */
interface Source {
  readonly dirs: PluginDirs
  readonly pg: Postgres
  readonly sidecar: Sidecar
  /** pgBackRest's own view of both repositories. */
  readonly env: Readonly<Record<string, string>>
  readonly first: string
  readonly second: string
  /** `SELECT now()` between phases B and C, UTC, as a user writes it into recoveryTarget.targetTime. */
  readonly targetTime: string
  /** The last segment archived before `second`: the archive holds it. */
  readonly archivedSegment: string
}
const Source = Context.GenericTag<Source>("restorePitr/Source")

const insertPhase = (pg: Postgres, phase: string) =>
  pg.psql(`INSERT INTO t (phase) SELECT '${phase}' FROM generate_series(1, 100)`)

const pause = Effect.sleep("1500 millis").pipe(withLiveClock)

const SourceLive = Layer.scoped(
  Source,
  Effect.gen(function* () {
    const { dirs, pg, sidecar, env } = yield* startArchivingCluster({ bucket: "restore-pitr" })
    const backup = (name: string) =>
      takeBackup(sidecar.pluginDir, { clusterFile: dirs.clusterFile, backupName: name, parameters: {} }).pipe(
        Effect.map((result) => result.backupId),
        Effect.mapError((error) => rigError(`backup ${name}`, error.message)),
      )

    yield* pg.psql("CREATE TABLE t (id serial PRIMARY KEY, phase text NOT NULL)")
    yield* insertPhase(pg, "A")
    const first = yield* backup("first")
    yield* insertPhase(pg, "B")
    yield* pause
    const targetTime = yield* pg.psql(
      "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
    )
    yield* pause
    yield* insertPhase(pg, "C")
    const archivedSegment = yield* pg.switchWal()
    yield* archivedThrough(pg, archivedSegment)
    const second = yield* backup("second")
    return { dirs, pg, sidecar, env, first, second, targetTime, archivedSegment }
  }).pipe(withLiveClock),
)

/** The `restore started` line of a restore sidecar's log: the backup set and repository it chose. */
const restoreStarted = (sidecar: Sidecar) =>
  Effect.map(sidecar.log(), (log) => logRecords(log).filter((record) => record.msg === "restore started"))

/** Lines of postgresql.auto.conf that are in effect (not comments) and configure recovery. */
const recoverySettings = (conf: string) =>
  conf
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => /^(restore_command|recovery_target|primary_conninfo|standby_mode)/.test(line))

layer(Layer.provideMerge(SourceLive, NodeContext.layer), { timeout: "150 seconds" })(
  "restore targets through the plugin (real PostgreSQL 15, pgBackRest, HTTPS S3 + posix)",
  (it) => {
    it.scoped(
      "point in time: targetTime T restores the backup before T and replays to T: phases A and B, not C",
      () =>
        Effect.gen(function* () {
          const source = yield* Source
          const clusterFile = yield* writeRestoredCluster(source.dirs, "cluster-pitr", {
            targetTime: source.targetTime,
          })
          const restored = yield* restoreCluster(source.dirs, {
            name: "pitr",
            clusterFile,
            recovery: [`recovery_target_time = '${source.targetTime}'`, "recovery_target_action = 'promote'"],
          })
          assert.strictEqual(yield* rowsByPhase(restored.pg), "A:100 B:100")

          // The newest backup ending before T, not the newest backup (which ends after T).
          const started = yield* restoreStarted(restored.sidecar)
          assert.strictEqual(started.length, 1)
          assert.strictEqual(started[0]?.backup, source.first)
          assert.strictEqual(started[0]?.repository, 1)

          // The operator writes the target; neither the plugin's answer nor pgBackRest may.
          assert.include(restored.restoreConfig, "recovery_target_action = promote")
          assert.notInclude(restored.restoreConfig, "recovery_target_time")
          assert.deepStrictEqual(recoverySettings(restored.autoConf), [])
          const serverLog = fs.readFileSync(restored.pg.logFile, "utf8")
          assert.match(serverLog, /recovery stopping before commit of transaction \d+, time /)

          // PostgreSQL's restore_command is our client, which calls WAL.Restore on the restore sidecar.
          const fromArchive = restoredFromArchive(restored.pg)
          assert.isAtLeast(fromArchive.length, 2, "segments restored from the archive")
          const walCalls = logRecords(yield* restored.sidecar.log()).filter(
            (record) => typeof record.rpc === "string" && record.rpc.includes("WAL/Restore"),
          )
          // The timeline history after promotion is not in the archive: NOT_FOUND, logged at debug.
          assert.isTrue(
            walCalls.some((record) => typeof record.msg === "string" && record.msg.includes("NotFound")),
            `the restore sidecar answered WAL.Restore NOT_FOUND: ${JSON.stringify(walCalls)}`,
          )
        }),
      150_000,
    )

    it.scoped(
      "backupID: the first of two full backups with recovery_target = 'immediate': only the rows before it",
      () =>
        Effect.gen(function* () {
          const source = yield* Source
          const clusterFile = yield* writeRestoredCluster(source.dirs, "cluster-backupid", {
            backupID: source.first,
          })
          const restored = yield* restoreCluster(source.dirs, {
            name: "backupid",
            clusterFile,
            recovery: ["recovery_target = 'immediate'", "recovery_target_action = 'promote'"],
          })
          assert.strictEqual(yield* rowsByPhase(restored.pg), "A:100")
          const started = yield* restoreStarted(restored.sidecar)
          assert.strictEqual(started.length, 1)
          assert.strictEqual(started[0]?.backup, source.first)
          assert.notStrictEqual(source.first, source.second)
          assert.match(
            fs.readFileSync(restored.pg.logFile, "utf8"),
            /recovery stopping after reaching consistency/,
          )
        }),
      150_000,
    )

    it.scoped(
      "no target: the newest backup and all WAL; WAL.Restore on its sidecar: beyond the archive NOT_FOUND, in it OK",
      () =>
        Effect.gen(function* () {
          const source = yield* Source
          const clusterFile = yield* writeRestoredCluster(source.dirs, "cluster-latest")
          const restored = yield* restoreCluster(source.dirs, {
            name: "latest",
            clusterFile,
            recovery: ["recovery_target_action = 'promote'"],
          })
          assert.strictEqual(yield* rowsByPhase(restored.pg), "A:100 B:100 C:100")
          const started = yield* restoreStarted(restored.sidecar)
          assert.strictEqual(started[0]?.backup, source.second)

          // The restore sidecar is still serving WAL for the restored PGDATA, as in the Job.
          const restore = yield* walRestoreClient(restored.sidecar.pluginDir, clusterFile)
          const pgWal = path.join(restored.pg.pgdata, "pg_wal")
          const missingFile = path.join(pgWal, "probe-missing")
          const missing = yield* restore("0000000100000000000000FF", missingFile)
          assert.strictEqual(missing.code, Status.NOT_FOUND, missing.details)
          assert.include(missing.details, "0000000100000000000000FF")
          assert.isFalse(fs.existsSync(missingFile))

          // The instance sidecar reads the cluster's own stanza: the same answer.
          const own = yield* walRestoreClient(source.sidecar.pluginDir, source.dirs.clusterFile)
          const ownFile = path.join(source.pg.pgdata, "pg_wal", "probe-missing")
          const ownMissing = yield* own("0000000100000000000000FF", ownFile)
          assert.strictEqual(ownMissing.code, Status.NOT_FOUND, ownMissing.details)
          assert.isFalse(fs.existsSync(ownFile))

          // A segment the archive holds: the bytes pgBackRest's own archive-get gives.
          const foundFile = path.join(pgWal, "probe-found")
          const found = yield* restore(source.archivedSegment, foundFile)
          assert.strictEqual(found.code, Status.OK, found.details)
          const owner = yield* postgresAccount
          const scratch = yield* makeTempDir("restore-probe-bare-", { owner, mode: 0o755 })
          const bare = path.join(scratch, source.archivedSegment)
          const got = yield* runPgBackRest(["archive-get", source.archivedSegment, bare], source.env)
          assert.strictEqual(got.exitCode, 0, got.stderr)
          const through = fs.readFileSync(foundFile)
          assert.strictEqual(through.length, 16 * 1024 * 1024)
          assert.isTrue(through.equals(fs.readFileSync(bare)), "same bytes as pgbackrest archive-get")
        }),
      150_000,
    )

    it.scoped("a restore into a non-empty PGDATA fails with FAILED_PRECONDITION and touches nothing", () =>
      Effect.gen(function* () {
        const source = yield* Source
        const owner = yield* postgresAccount
        const pgdata = yield* makeTempDir("restore-nonempty-", { owner, mode: 0o700 })
        const keep = path.join(pgdata, "keep-me")
        fs.writeFileSync(keep, "precious data\n")
        fs.chownSync(keep, owner.uid, owner.gid)
        const before = yield* fileTree(pgdata)

        const { sidecar } = yield* restoreSidecarFor(source.dirs, pgdata, { name: "nonempty" })
        yield* sidecar.start()
        const refusal = yield* Effect.flip(restoreJob(sidecar.pluginDir, source.dirs.restoredClusterFile))
        assert.strictEqual(refusal.code, Status.FAILED_PRECONDITION, refusal.reason)
        assert.include(refusal.reason, pgdata)
        assert.include(refusal.reason, "keep-me")

        assert.deepStrictEqual(yield* fileTree(pgdata), before)
        assert.strictEqual(fs.readFileSync(keep, "utf8"), "precious data\n")
        assert.lengthOf(yield* restoreStarted(sidecar), 0, "pgbackrest restore never ran")
      }),
    )
  },
)
