import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { takeBackup } from "../../src/cli/pluginClient.js"
import { type RigError, rigError, withLiveClock } from "../rig/exec.js"
import * as FaultProxy from "../rig/faultProxy.js"
import type { PluginDirs } from "../rig/plugin.js"
import {
  archivedThrough,
  eventually,
  logRecords,
  restoreCluster,
  restoredFromArchive,
  rowsByPhase,
  startArchivingCluster,
  writeRestoredCluster,
} from "./support.js"

/**
 * A point-in-time recovery whose WAL replay meets a failing object store. CloudNativePG reads any
 * WAL.Restore error as "file absent", and PostgreSQL in archive recovery would then end recovery and
 * promote short of its target: the restore sidecar must wait the failure out. The only repository is
 * S3, so nothing can be read elsewhere meanwhile.
 */

const insertPhase = (
  pg: { readonly psql: (sql: string) => Effect.Effect<string, RigError> },
  phase: string,
) => pg.psql(`INSERT INTO t (phase) SELECT '${phase}' FROM generate_series(1, 100)`)

/** The restore sidecar's log file, as `restoreSidecarFor` names it. */
const restoreLog = (dirs: PluginDirs, name: string) => path.join(dirs.baseDir, `${name}-sidecar.log`)

const sidecarLog = (dirs: PluginDirs, name: string) =>
  Effect.sync(() => {
    const file = restoreLog(dirs, name)
    return logRecords(fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "")
  })

/**
 * Waits until PostgreSQL, started on the restored PGDATA, made its first WAL.Restore call (the next
 * timeline's history file): from then on, it replays the segments through the sidecar.
 */
const replayStarted = (dirs: PluginDirs, name: string) =>
  eventually(
    `${name}: the first WAL.Restore call`,
    sidecarLog(dirs, name),
    (records) => records.some((record) => record.rpc === "cnpgi.wal.v1.WAL/Restore"),
    180_000,
  )

layer(NodeContext.layer, { timeout: "300 seconds" })(
  "point-in-time recovery while S3 fails during replay (real PostgreSQL 15, pgBackRest, HTTPS S3)",
  (it) => {
    it.scoped(
      "503/500 answers for 10 s, then a 5 s outage, during replay: recovery reaches its target, every row is there",
      () =>
        Effect.gen(function* () {
          const proxied = yield* Deferred.make<FaultProxy.FaultProxy>()
          const { s3, dirs, pg, sidecar } = yield* startArchivingCluster({
            bucket: "restore-faults",
            // S3 only, so that no other repository answers during the fault; a short io-timeout, so
            // that a failing request fails pgBackRest's command within seconds (see s3Errors.test.ts).
            stanza: () => ({ posixRepositories: [], customEnvVar: { PGBACKREST_IO_TIMEOUT: "1" } }),
            prepare: FaultProxy.interposeOn(proxied),
          })
          const proxy = yield* Deferred.await(proxied)

          yield* pg.psql("CREATE TABLE t (id serial PRIMARY KEY, phase text NOT NULL)")
          yield* insertPhase(pg, "A")
          yield* takeBackup(sidecar.pluginDir, {
            clusterFile: dirs.clusterFile,
            backupName: "before",
            parameters: {},
          }).pipe(Effect.mapError((error) => rigError("backup", error.message)))
          // Phase B over several segments, each of which replay must fetch.
          for (let i = 0; i < 4; i++) {
            yield* insertPhase(pg, "B")
            yield* pg.switchWal()
          }
          yield* Effect.sleep("1500 millis")
          const targetTime = yield* pg.psql(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
          )
          yield* Effect.sleep("1500 millis")
          yield* insertPhase(pg, "C")
          yield* archivedThrough(pg, yield* pg.switchWal())

          const restoreOnce = (name: string, fault: Effect.Effect<void, RigError>) =>
            Effect.gen(function* () {
              const clusterFile = yield* writeRestoredCluster(dirs, `cluster-${name}`, { targetTime })
              // The fault starts with the replay, so it hits the segments' WAL.Restore calls, and nothing else.
              const faulting = yield* Effect.fork(Effect.zipRight(replayStarted(dirs, name), fault))
              const restored = yield* restoreCluster(dirs, {
                name,
                clusterFile,
                recovery: [`recovery_target_time = '${targetTime}'`, "recovery_target_action = 'promote'"],
                promoteTimeoutMs: 240_000,
              })
              yield* Fiber.join(faulting)
              assert.strictEqual(
                yield* rowsByPhase(restored.pg),
                "A:100 B:400",
                `${name}: rows after recovery`,
              )
              assert.isAtLeast(restoredFromArchive(restored.pg).length, 4, `${name}: segments replayed`)
              assert.match(
                fs.readFileSync(restored.pg.logFile, "utf8"),
                /recovery stopping before commit of transaction \d+, time /,
                `${name}: recovery stopped at its target, not at a missing segment`,
              )
              // The fault was felt by the replay of a segment, which the sidecar read again.
              const retried = (yield* sidecarLog(dirs, name)).filter(
                (record) =>
                  String(record.msg).startsWith("WAL file not readable now") &&
                  /^[0-9A-F]{24}$/.test(String(record.wal)),
              )
              assert.isNotEmpty(retried, `${name}: no segment was read again during the fault`)
              return restored
            })

          // S3 answers 503 SlowDown and 500 InternalError in turn for 10 s.
          const before = yield* proxy.counts()
          yield* restoreOnce(
            "pitr-5xx",
            Effect.gen(function* () {
              yield* proxy.setMode("alternate")
              yield* Effect.sleep("10 seconds")
              yield* proxy.setMode("pass")
            }),
          )
          const after = yield* proxy.counts()
          assert.isAbove(after.slowDown, before.slowDown, "no request of the replay was answered 503")
          assert.isAbove(
            after.internalError,
            before.internalError,
            "no request of the replay was answered 500",
          )

          // The S3 endpoint stopped for 5 s.
          yield* restoreOnce(
            "pitr-outage",
            Effect.gen(function* () {
              yield* s3.stop()
              yield* Effect.sleep("5 seconds")
              yield* s3.start()
            }),
          )
        }).pipe(withLiveClock),
      300_000,
    )
  },
)
