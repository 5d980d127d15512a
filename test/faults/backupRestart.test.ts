import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Duration, Effect, Fiber, Option } from "effect"
import { Status } from "nice-grpc"
import { CANCEL_GRACE, SHUTDOWN_GRACE } from "../../src/grpc/server.js"
import { ANNOTATION_BACKUP_UID } from "../../src/instance/backupResult.js"
import { assertResultMatches, byUid, infoBackups, succeeded, waitUntil } from "../e2e/backupSupport.js"
import { archiveGet, eventually, readySegments } from "../e2e/support.js"
import { withLiveClock } from "../rig/exec.js"
import {
  backlogCleared,
  type FaultRig,
  finishFault,
  isRunning,
  orphanedPgBackRest,
  pgbackrestChild,
  sidecarPgBackRest,
  startFaultRig,
} from "./harness.js"

/** A backup of a 220 MB table, a restore and a load on two shared cores. */
const TEST_TIMEOUT_MS = 600_000

/** The backup sets in the posix repository's directory, complete or not. */
const posixBackupSets = (rig: FaultRig): ReadonlyArray<string> => {
  const dir = path.join(rig.dirs.posixRepo, "backup", "main")
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => /^\d{8}-\d{6}F/.test(name)) : []
}

/** pgBackRest's sessions in PostgreSQL (`application_name` "pgBackRest [backup]"). */
const pgBackRestSessions = (rig: FaultRig) =>
  Effect.map(
    rig.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgBackRest%'"),
    Number,
  )

const backupsOf = (rig: FaultRig) =>
  sidecarPgBackRest(rig).filter((process) => /^pgbackrest (?:\S+ )*backup\b/.test(process.args))

/**
 * A full backup to the posix repository (2) is copying files when the sidecar is stopped (SIGTERM, its
 * graceful stop) or killed (SIGKILL), then started again. The database holds a ~220 MB table, written
 * under the load, so that the backup takes seconds.
 */
const restartDuringBackup = (signal: "SIGTERM" | "SIGKILL", bucket: string) =>
  Effect.gen(function* () {
    const rig = yield* startFaultRig({ bucket })
    yield* rig.pg.psql(
      "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 10) AS filler FROM generate_series(1, 600000) g",
    )
    yield* eventually(
      "the table's WAL to be archived",
      readySegments(rig.pg),
      (ready) => ready.length <= 1,
      120_000,
    )
    const before = yield* infoBackups(rig.env)
    const existing = new Set(posixBackupSets(rig))

    const interrupted = yield* Effect.fork(rig.backup({ selectedRepository: "2" }))
    const leader = yield* pgbackrestChild(rig, "backup", 60_000)
    // After pg_backup_start: pgBackRest has created the set's pg_data directory and copies files.
    yield* waitUntil(
      "pgbackrest backup to copy files",
      () =>
        posixBackupSets(rig).some(
          (name) =>
            !existing.has(name) &&
            fs.existsSync(path.join(rig.dirs.posixRepo, "backup", "main", name, "pg_data")),
        ),
      60_000,
    )
    assert.isTrue(isRunning(leader.pid), "the backup ended before the restart")
    assert.isTrue(Option.isNone(yield* Fiber.poll(interrupted)), "the call ended before the restart")
    const processesAtFault = backupsOf(rig)

    const sidecarPid = rig.sidecar.pid()
    if (sidecarPid === undefined) return assert.fail("the sidecar is not running")
    const faultAt = Date.now()
    process.kill(sidecarPid, signal)
    // A graceful stop drains the calls in flight (SHUTDOWN_GRACE in src/grpc/server.ts) and must
    // stop its pgBackRest before it exits; the rig's own stop() waits only 30 s, so wait here.
    yield* waitUntil(`the sidecar to exit on ${signal}`, () => !isRunning(sidecarPid), 240_000, 10)
    const downAt = Date.now()
    yield* rig.sidecar.stop()
    // Whatever pgBackRest of the dead sidecar still runs is nobody's child now.
    const leftAtExit = sidecarPgBackRest(rig)
    if (signal === "SIGTERM") {
      // The grace period is honoured (a release runs uninterruptibly, and used to wait for the backup
      // to end, with archiving down meanwhile: 66 s here), and the cancelled call stopped its pgBackRest
      // before the process exited. The bound is the contract plus room for a loaded machine.
      const limit = Duration.toMillis(SHUTDOWN_GRACE) + Duration.toMillis(CANCEL_GRACE) + 15_000
      assert.isAtMost(downAt - faultAt, limit, "the sidecar overran its shutdown grace period")
      assert.deepStrictEqual(
        leftAtExit.map((p) => p.args),
        [],
        "pgBackRest still running after a graceful stop",
      )
    }
    if (signal === "SIGKILL") {
      // In a pod the sidecar runs under tini as PID 1 of its container's PID namespace: when the plugin
      // dies, tini exits and the kernel SIGKILLs every process left in the namespace. The rig's sidecar
      // is a plain child process, so that part of a container's death is done here (and reported).
      for (const survivor of leftAtExit) {
        yield* Effect.try(() => process.kill(survivor.pid, "SIGKILL")).pipe(Effect.ignore)
      }
    }
    // After a graceful stop they must end by themselves (the plugin signalled them before it exited).
    yield* waitUntil(
      "the interrupted backup's pgBackRest processes to end",
      () => sidecarPgBackRest(rig).length === 0,
      60_000,
      10,
    )
    const staleGoneMs = Date.now() - downAt
    yield* eventually(
      "pgBackRest's PostgreSQL sessions to end",
      pgBackRestSessions(rig),
      (n) => n === 0,
      60_000,
    )

    yield* rig.sidecar.start()
    const restartedAt = Date.now()
    const call = yield* Fiber.join(interrupted)
    assert.isFalse(call.ok, `the interrupted backup was reported as taken: ${JSON.stringify(call)}`)
    const code = call.ok ? Status.OK : call.code
    const details = call.ok ? "" : call.details
    assert.deepStrictEqual(orphanedPgBackRest(rig), [], "pgBackRest processes left by the old sidecar")

    // pgBackRest may have finished the interrupted call's backup within the grace period; the plugin
    // then waits for its WAL, which PostgreSQL cannot archive through a sidecar that is stopping, so
    // the call fails (pgBackRest's own archive-check would have refused the set; it cannot run with
    // CloudNativePG's archive_command). Such a set must be whole once the sidecar is back (checked
    // below); no other set of the fault is listed.
    const afterFault = yield* infoBackups(rig.env)
    const finished = afterFault.filter((backup) => backup.annotation?.[ANNOTATION_BACKUP_UID] === call.uid)
    assert.isAtMost(finished.length, 1)
    assert.deepStrictEqual(
      afterFault.filter((backup) => !finished.includes(backup)).map((backup) => backup.label),
      before.map((backup) => backup.label),
    )

    // The next backup takes the lock the interrupted one held, and is exactly that backup.
    const next = yield* rig.backup({ selectedRepository: "2" })
    const nextResult = succeeded(next)
    const recovered = (Date.now() - restartedAt) / 1000
    assertResultMatches(nextResult, byUid(yield* infoBackups(rig.env), 2, next.uid), {
      repository: 2,
      type: "full",
    })
    const backlog = yield* backlogCleared(rig, restartedAt)
    // A set the interrupted call left is restorable now: the WAL up to its stop reached repository 2.
    for (const backup of finished) {
      const stop = backup.archive.stop
      assert.isNotNull(stop, `${backup.label} has no stop WAL`)
      assert.strictEqual(
        yield* archiveGet(rig.env, 2, stop ?? "", rig.pg.baseDir),
        0,
        `${stop} of ${backup.label}`,
      )
    }

    console.log(
      `${signal} during a backup: the sidecar exited ${downAt - faultAt} ms after the signal ` +
        `(calls in flight get ${Duration.toMillis(SHUTDOWN_GRACE)} ms on a graceful stop); ` +
        `pgBackRest processes still running when it was gone ${JSON.stringify(leftAtExit.map((p) => p.args))}, ` +
        `ended ${staleGoneMs} ms after it${signal === "SIGKILL" ? " (SIGKILLed as a container's end would)" : ""}; ` +
        `the call answered ${Status[code]} "${details}" after ${call.ms} ms; ` +
        `pgBackRest processes at the fault ${JSON.stringify(processesAtFault.map((p) => p.args))}; ` +
        `the next backup ${nextResult.backupId} in ${next.ms} ms; ` +
        `WAL backlog cleared ${backlog.toFixed(1)} s after the restart`,
    )
    yield* finishFault(rig, `sidecar restarted (${signal}) during a backup`, recovered)
  }).pipe(withLiveClock)

layer(NodeContext.layer)("fault: the sidecar restarted while a backup runs, under load", (it) => {
  it.scoped(
    "SIGTERM: the call fails, nothing half-done is listed or left running, the next backup is taken",
    () => restartDuringBackup("SIGTERM", "fault-backup-sigterm"),
    TEST_TIMEOUT_MS,
  )
  it.scoped(
    "SIGKILL: the call fails, nothing half-done is listed or left running, the next backup is taken",
    () => restartDuringBackup("SIGKILL", "fault-backup-sigkill"),
    TEST_TIMEOUT_MS,
  )
})
