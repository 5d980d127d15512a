import * as fs from "node:fs"
import * as path from "node:path"
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Console, Deferred, Duration, Effect, Fiber, Schedule, type Scope } from "effect"
import { archiverStats, pgbackrestProcesses, readySegments } from "../e2e/support.js"
import { exec, execOk, postgresAccount, type RigError, rigError, withLiveClock } from "../rig/exec.js"
import { archiveFailures, backlogCleared, finishFault, startFaultRig } from "./harness.js"

/** Room for the spool's status files (a few bytes each) and directories, far from what a fault needs. */
const SPOOL_SIZE = "4m"
const SPOOL_INODES = 512

const errorCode = (error: unknown): string | undefined =>
  error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : undefined

/**
 * Mounts a small tmpfs, owned by postgres, on the sidecar's (still empty) spool directory for the scope.
 * The release first SIGKILLs pgBackRest's detached async worker (it may still have the spool open),
 * then unmounts, lazily if the filesystem is still busy: the rig's temp dir is removed right after.
 */
const mountSpool = (spoolDir: string): Effect.Effect<void, RigError, Scope.Scope | CommandExecutor> =>
  Effect.gen(function* () {
    const owner = yield* postgresAccount
    const options = `size=${SPOOL_SIZE},nr_inodes=${SPOOL_INODES},uid=${owner.uid},gid=${owner.gid},mode=0700`
    yield* Effect.acquireRelease(
      execOk("mount spool", "mount", ["-t", "tmpfs", "-o", options, "tmpfs", spoolDir]),
      () =>
        Effect.gen(function* () {
          for (const { pid } of pgbackrestProcesses(`PGBACKREST_SPOOL_PATH=${spoolDir}`)) {
            yield* Effect.try(() => process.kill(pid, "SIGKILL")).pipe(Effect.ignore)
          }
          const unmounted = yield* exec("umount spool", "umount", [spoolDir]).pipe(
            Effect.filterOrFail(
              (result) => result.exitCode === 0,
              () => rigError("umount spool", "busy"),
            ),
            Effect.retry(Schedule.spaced(Duration.millis(200)).pipe(Schedule.intersect(Schedule.recurs(10)))),
            Effect.isSuccess,
          )
          if (!unmounted) {
            yield* exec("umount spool", "umount", ["-l", spoolDir]).pipe(Effect.ignore)
          }
        }).pipe(withLiveClock),
    )
  })

/** What one filling pass took: bytes written and inodes used up. */
interface Filled {
  readonly bytes: number
  readonly files: number
}

/**
 * Takes what is left of the spool filesystem, as root: data blocks (one file written until ENOSPC) and
 * inodes (empty files until ENOSPC). Both, because pgBackRest's status file of a pushed segment, `.ok`,
 * is empty: creating it takes an inode and no block, so a spool without free blocks alone still works.
 */
const fill = (fillerDir: string): Effect.Effect<Filled, RigError> =>
  Effect.try({
    try: () => {
      fs.mkdirSync(fillerDir, { recursive: true })
      let bytes = 0
      const chunk = Buffer.alloc(64 * 1024, 0x5a)
      const fd = fs.openSync(path.join(fillerDir, "blocks"), "a")
      try {
        for (;;) {
          const written = fs.writeSync(fd, chunk)
          bytes += written
          if (written === 0) break
        }
      } catch (error) {
        if (errorCode(error) !== "ENOSPC") throw error
      } finally {
        fs.closeSync(fd)
      }
      let files = 0
      try {
        for (;;) {
          fs.closeSync(fs.openSync(path.join(fillerDir, `inode-${Date.now()}-${files}`), "wx"))
          files += 1
        }
      } catch (error) {
        if (errorCode(error) !== "ENOSPC") throw error
      }
      return { bytes, files }
    },
    catch: (error) => rigError("fill spool", String(error)),
  })

layer(NodeContext.layer)("fault: the async archiving spool full for 30 s under load", (it) => {
  it.scoped("every segment reaches both repositories and a restore to latest holds every row", () =>
    Effect.gen(function* () {
      const spool = yield* Deferred.make<string>()
      const rig = yield* startFaultRig({
        bucket: "fault-spool-full",
        // The queue limit is far above what the fault leaves behind: past it, pgBackRest drops WAL on purpose.
        stanza: () => ({ archive: { async: true, pushQueueMax: "4GiB" } }),
        prepare: ({ dirs }) =>
          Effect.zipRight(mountSpool(dirs.spoolDir), Deferred.succeed(spool, dirs.spoolDir)),
      })
      const spoolDir = yield* Deferred.await(spool)
      yield* Effect.sleep("3 seconds")
      const before = yield* archiverStats(rig.pg)
      assert.isAbove(before.archived, 0, "nothing was archived before the fault")
      assert.isTrue(
        fs.existsSync(path.join(spoolDir, "archive", "main", "out")),
        "the async worker never used the spool",
      )
      const logBefore = (yield* rig.sidecar.log()).length

      const fillerDir = path.join(spoolDir, "filler")
      const stop = yield* Deferred.make<void>()
      let total: Filled = { bytes: 0, files: 0 }
      // Whatever pgBackRest frees during the fault (it removes stale status files) is taken again.
      const keeper = yield* Effect.gen(function* () {
        while (!(yield* Deferred.isDone(stop))) {
          const pass = yield* fill(fillerDir)
          total = { bytes: total.bytes + pass.bytes, files: total.files + pass.files }
          yield* Effect.sleep("100 millis")
        }
      }).pipe(withLiveClock, Effect.fork)
      yield* Effect.sleep("30 seconds")
      yield* Deferred.succeed(stop, undefined)
      yield* Fiber.join(keeper)
      const during = yield* archiverStats(rig.pg)
      const backlog = yield* readySegments(rig.pg)
      yield* Effect.try({
        try: () => fs.rmSync(fillerDir, { recursive: true, force: true }),
        catch: (error) => rigError("empty spool", String(error)),
      })
      const faultEndedAt = Date.now()
      assert.isAbove(total.bytes, 0, "the filler found no free block in the spool")
      assert.isAbove(total.files, 0, "the filler found no free inode in the spool")
      // The fault must have been felt: nothing archived, and segments piled up in pg_wal.
      assert.isAtMost(during.archived - before.archived, 1, "archiving went on while the spool was full")
      assert.isAtLeast(backlog.length, 5, "no backlog built up while the spool was full")

      const recovered = yield* backlogCleared(rig, faultEndedAt)
      // The segment waiting when the spool filled up was refused, not acknowledged: its async worker
      // could write neither its .ok nor its .error file, so archive-push waited for one until
      // archive-timeout (60 s) and failed with ArchiveTimeoutError.
      const failures = archiveFailures((yield* rig.sidecar.log()).slice(logBefore))
      yield* Console.log(
        `spool full: the filler took ${total.bytes} bytes and ${total.files} inodes; during the fault ` +
          `archive_command failed ${during.failed - before.failed} times and archived ` +
          `${during.archived - before.archived} segments, ${backlog.length} were waiting at its end; ` +
          `WAL.Archive failures since it began: ${failures.length > 0 ? failures.join(" | ") : "none"}`,
      )
      assert.isTrue(
        failures.some((failure) => failure.startsWith("exit code 82:")),
        `archive-push never failed with ArchiveTimeoutError: ${JSON.stringify(failures)}`,
      )
      yield* finishFault(rig, "async spool full for 30 s", recovered)
    }).pipe(withLiveClock),
  )
})
