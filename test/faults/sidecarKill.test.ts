import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { archiverStats, logRecords } from "../e2e/support.js"
import { rigError, withLiveClock } from "../rig/exec.js"
import {
  backlogCleared,
  finishFault,
  isRunning,
  orphanedPgBackRest,
  pgbackrestChild,
  type SidecarPgBackRest,
  startFaultRig,
} from "./harness.js"

/** How long the sidecar stays down, PostgreSQL's archive_command failing meanwhile. */
const DOWN_MS = 5_000

/** Tries to catch an archive-push before giving up: one can end between the look and the kill. */
const ATTEMPTS = 20

layer(NodeContext.layer)("fault: the sidecar SIGKILLed during an archive-push, then restarted", (it) => {
  it.scoped("every segment reaches both repositories and a restore to latest holds every row", () =>
    Effect.gen(function* () {
      const rig = yield* startFaultRig({ bucket: "fault-sidecar-kill" })
      yield* Effect.sleep("3 seconds")
      const before = yield* archiverStats(rig.pg)
      assert.isAbove(before.archived, 0, "nothing was archived before the fault")

      // The kill must land while pgBackRest pushes a segment: the push is seen running right before
      // the SIGKILL and right after it (in the same tick), so it was running when the sidecar died.
      let caught: { readonly push: SidecarPgBackRest; readonly sidecarPid: number } | undefined
      let attempts = 0
      while (caught === undefined) {
        attempts += 1
        if (attempts > ATTEMPTS) {
          return yield* Effect.fail(
            rigError("sidecar kill", `no archive-push still running at the kill in ${ATTEMPTS} attempts`),
          )
        }
        const push = yield* pgbackrestChild(rig, "archive-push", 60_000)
        const sidecarPid = rig.sidecar.pid()
        if (sidecarPid === undefined || push.ppid !== sidecarPid || !isRunning(push.pid)) {
          continue
        }
        process.kill(sidecarPid, "SIGKILL")
        const runningAtKill = isRunning(push.pid)
        // Waits for the exit the signal above caused.
        yield* rig.sidecar.kill()
        if (runningAtKill) {
          caught = { push, sidecarPid }
        } else {
          yield* Effect.logInfo(`attempt ${attempts}: ${push.args} ended just before the kill; again`)
          yield* rig.sidecar.start()
          yield* Effect.sleep("1 second")
        }
      }
      const killedAt = Date.now()
      const { push } = caught

      // What became of the push the dead sidecar had started: it is nobody's child now. No pgBackRest of
      // the dead sidecar may run on for ever (it would hold the archive lock): watched every 10 ms for
      // the time the sidecar stays down, and up to 2 minutes if it outlives that.
      const stillRunning = isRunning(push.pid)
      let orphanGoneMs: number | undefined
      while (Date.now() - killedAt < DOWN_MS || orphanGoneMs === undefined) {
        if (orphanGoneMs === undefined && !isRunning(push.pid)) {
          orphanGoneMs = Date.now() - killedAt
        }
        if (orphanGoneMs === undefined && Date.now() - killedAt > 120_000) {
          return yield* Effect.fail(
            rigError("orphan", `${push.args} (pid ${push.pid}) still runs 2 minutes after its sidecar died`),
          )
        }
        yield* Effect.sleep("10 millis")
      }

      // PostgreSQL felt it: its archive_command failed while the sidecar was down.
      const during = yield* archiverStats(rig.pg)
      assert.isAbove(during.failed, before.failed, "archive_command did not fail while the sidecar was down")
      const orphans = orphanedPgBackRest(rig)
      assert.deepStrictEqual(orphans, [], "pgBackRest processes left behind by the killed sidecar")

      yield* rig.sidecar.start()
      const restartedAt = Date.now()
      const recovered = yield* backlogCleared(rig, restartedAt)

      // Every push after the restart went through: no lock of the dead process stood in the way.
      const log = yield* rig.sidecar.log()
      const lockErrors = logRecords(log).filter((record) =>
        /acquire lock|LockAcquire/i.test(JSON.stringify(record)),
      )
      assert.deepStrictEqual(lockErrors, [], "lock trouble in the sidecar's log")
      assert.deepStrictEqual(orphanedPgBackRest(rig), [])

      console.log(
        `sidecar kill: caught ${push.args} (pid ${push.pid}) on attempt ${attempts}; ` +
          `it ${stillRunning ? "was still running" : "had ended"} after the kill and ended ` +
          `${orphanGoneMs ?? "?"} ms after it; archive_command failed ${during.failed - before.failed} times while down; ` +
          `backlog cleared ${recovered.toFixed(1)} s after the restart`,
      )
      yield* finishFault(rig, "sidecar SIGKILLed during an archive-push, down 5 s", recovered)
    }).pipe(withLiveClock),
  )
})
