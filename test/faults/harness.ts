import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import { assert } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option, Schema, type Scope } from "effect"
import { type BackupRig, makeBackupRig, succeeded } from "../e2e/backupSupport.js"
import {
  archivedThrough,
  logRecords,
  missingSegments,
  type PrepareContext,
  type PrepareSetup,
  pgbackrestProcesses,
  readySegments,
  restoreCluster,
  segmentRange,
  writeRestoredCluster,
} from "../e2e/support.js"
import { type RigError, rigError, withLiveClock } from "../rig/exec.js"
import type { PluginDirs } from "../rig/plugin.js"
import type { Postgres } from "../rig/postgres.js"
import { statNow } from "../rig/process.js"
import { type FaultRow, recordFault } from "./report.js"

/**
 * A source cluster under a steady write load: the backup rig (HTTPS S3 as repository 1, posix as 2, the
 * sidecar, Backup.Backup), a first full backup to restore from, and a background writer that inserts a
 * row about every 50 ms and completes a WAL segment every second, so PostgreSQL keeps archiving (and
 * keeps waking its archiver with new .ready files) through every fault.
 */
export interface FaultRig extends BackupRig {
  /** The segment in which the load started: every segment from it to the last must be archived. */
  readonly firstSegment: string
  /** Rows written so far by the load. */
  readonly rowsWritten: () => number
}

const LOAD_TABLE = "fault_load"

/** Rows the load writes between two WAL switches (one insert every ~50 ms, a switch every ~1 s). */
const ROWS_PER_SEGMENT = 20

const currentSegment = (pg: Postgres) => pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")

/**
 * Starts the rig, takes the first full backup (the one the final restore starts from), then the load.
 * The load stops when the scope closes or at {@link finishFault}, whichever comes first.
 */
export const startFaultRig = (options: {
  readonly bucket: string
  readonly stanza?: (dirs: PluginDirs) => Readonly<Record<string, unknown>>
  /**
   * Runs before PostgreSQL and the sidecar start, in the test's scope (a proxy in front of S3, a small
   * filesystem under the spool): what it sets up is in place for the whole run, first backup included.
   */
  readonly prepare?: (setup: PrepareSetup) => Effect.Effect<void, RigError, PrepareContext>
}): Effect.Effect<FaultRig, RigError, Scope.Scope | FileSystem.FileSystem | CommandExecutor> =>
  Effect.gen(function* () {
    const rig = yield* makeBackupRig({
      bucket: options.bucket,
      ...(options.stanza === undefined ? {} : { stanza: options.stanza }),
      ...(options.prepare === undefined ? {} : { prepare: options.prepare }),
    })
    yield* rig.pg.psql(
      `CREATE TABLE ${LOAD_TABLE} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now(), payload text NOT NULL)`,
    )
    succeeded(yield* rig.backup())
    const firstSegment = yield* currentSegment(rig.pg)
    let written = 0
    const stop = yield* Deferred.make<void>()
    const writer = Effect.gen(function* () {
      while (!(yield* Deferred.isDone(stop))) {
        written += 1
        yield* rig.pg.psql(`INSERT INTO ${LOAD_TABLE} (id, payload) VALUES (${written}, md5('${written}'))`)
        if (written % ROWS_PER_SEGMENT === 0) {
          yield* rig.pg.switchWal()
        }
        yield* Effect.sleep("50 millis")
      }
    }).pipe(withLiveClock)
    const fiber = yield* Effect.forkScoped(writer)
    loads.set(rig.pg, { stop, fiber })
    return { ...rig, firstSegment, rowsWritten: () => written }
  })

interface Load {
  readonly stop: Deferred.Deferred<void>
  readonly fiber: Fiber.RuntimeFiber<void, RigError>
}
const loads = new WeakMap<Postgres, Load>()

/**
 * Seconds from `faultEndedAt` (a `Date.now()`) until PostgreSQL has archived every segment that was
 * waiting when this is called: the backlog the fault left. PostgreSQL's own archiver timing is part of
 * it (nothing here wakes the archiver; the load's segment switches do, as in production).
 */
export const backlogCleared = (
  rig: FaultRig,
  faultEndedAt: number,
  timeoutMs = 180_000,
): Effect.Effect<number, RigError> =>
  Effect.gen(function* () {
    const waiting = yield* readySegments(rig.pg)
    const last = waiting[waiting.length - 1]
    if (last !== undefined) {
      yield* archivedThrough(rig.pg, last, timeoutMs)
    }
    return (Date.now() - faultEndedAt) / 1000
  }).pipe(withLiveClock)

const FailedPush = Schema.parseJson(Schema.Struct({ exitCode: Schema.Number, stderrTail: Schema.String }))

/** pgBackRest's summary of a failed command: each repository's error when it lists them, else its first line. */
const summary = (stderrTail: string): string => {
  const lines = stderrTail.trim().split("\n")
  const perRepository = lines.map((line) => line.trim()).filter((line) => /^repo\d+: \[/.test(line))
  return perRepository.length > 0 ? perRepository.join("; ") : (lines[0] ?? "")
}

/**
 * The WAL.Archive calls the sidecar's `log` (or a slice of it) reports as failed, oldest first, each as
 * `exit code <n>: <what pgBackRest said>` (or the log message when it was not a pgBackRest exit).
 */
export const archiveFailures = (log: string): ReadonlyArray<string> =>
  logRecords(log).flatMap((record) => {
    const message = record.msg
    if (record.rpc !== "cnpgi.wal.v1.WAL/Archive" || typeof message !== "string") return []
    if (!message.startsWith("call failed")) return []
    return Option.match(Schema.decodeUnknownOption(FailedPush)(message.slice("call failed".length).trim()), {
      onNone: () => [message],
      onSome: (failure) => [`exit code ${failure.exitCode}: ${summary(failure.stderrTail)}`],
    })
  })

const sourceRows = (pg: Postgres) =>
  Effect.map(pg.psql(`SELECT id || ':' || payload FROM ${LOAD_TABLE} ORDER BY id`), (text) =>
    text.split("\n").filter((line) => line !== ""),
  )

/**
 * Ends a fault run: stops the load, completes the last segment and waits for it to be archived, counts
 * the segments from the first of the load to the last in both repositories, restores a new cluster to
 * the latest point through the restore sidecar and compares every row with the source. Records the
 * row for the table, then asserts that nothing was lost.
 */
export const finishFault = (
  rig: FaultRig,
  fault: string,
  recoverSeconds: number,
): Effect.Effect<FaultRow, RigError, Scope.Scope | FileSystem.FileSystem | CommandExecutor> =>
  Effect.gen(function* () {
    const load = loads.get(rig.pg)
    if (load === undefined) {
      return yield* Effect.fail(rigError("fault run", "no load is running for this cluster"))
    }
    yield* Deferred.succeed(load.stop, undefined)
    yield* Fiber.join(load.fiber)
    const source = yield* sourceRows(rig.pg)
    const lastSegment = yield* rig.pg.switchWal()
    yield* archivedThrough(rig.pg, lastSegment, 180_000)

    const expected = segmentRange(rig.firstSegment, lastSegment)
    const lost = new Set<string>()
    for (const repo of [1, 2]) {
      for (const segment of yield* missingSegments(rig.env, repo, expected)) {
        lost.add(segment)
      }
    }

    const clusterFile = yield* writeRestoredCluster(rig.dirs, `restored-${rig.s3.bucket}`)
    const restored = yield* restoreCluster(rig.dirs, {
      name: `restored-${rig.s3.bucket}`,
      clusterFile,
      recovery: ["recovery_target_action = 'promote'"],
      promoteTimeoutMs: 300_000,
    })
    const present = new Set(yield* sourceRows(restored.pg))
    const rowsLost = source.filter((row) => !present.has(row)).length

    const row: FaultRow = {
      fault,
      segmentsArchived: expected.length - lost.size,
      segmentsLost: lost.size,
      rowsCompared: source.length,
      rowsLost,
      recoverSeconds,
    }
    recordFault(row)
    assert.deepStrictEqual([...lost].sort(), [], `segments missing from a repository after: ${fault}`)
    assert.strictEqual(rowsLost, 0, `rows of the source missing after restoring to latest: ${fault}`)
    assert.isAbove(source.length, 0, "the load wrote no rows")
    assert.strictEqual(present.size, source.length, "the restored cluster holds rows the source does not")
    return row
  }).pipe(withLiveClock)

/** A pgBackRest process started by the rig's instance sidecar (any run of it), with its parent. */
export interface SidecarPgBackRest {
  readonly pid: number
  readonly ppid: number
  readonly args: string
}

/** Whether `pid` is a process that has not exited yet (a zombie has). */
export const isRunning = (pid: number): boolean =>
  Option.exists(statNow(pid), (stat) => stat.state !== "Z" && stat.state !== "X")

/** The running pgBackRest processes whose environment holds the rig's spool path: the sidecar's, past or present. */
export const sidecarPgBackRest = (rig: BackupRig): ReadonlyArray<SidecarPgBackRest> =>
  pgbackrestProcesses(`PGBACKREST_SPOOL_PATH=${rig.dirs.spoolDir}`).flatMap((process) => {
    const stat = statNow(process.pid)
    return Option.isNone(stat) || stat.value.state === "Z" ? [] : [{ ...process, ppid: stat.value.ppid }]
  })

/**
 * The sidecar's pgBackRest processes that neither the running sidecar nor another pgBackRest process is
 * the parent of: left behind by a sidecar that died (the init process or a subreaper inherited them).
 */
export const orphanedPgBackRest = (rig: BackupRig): ReadonlyArray<SidecarPgBackRest> => {
  const all = sidecarPgBackRest(rig)
  const pids = new Set(all.map((process) => process.pid))
  const sidecar = rig.sidecar.pid()
  const sidecarRunning = sidecar !== undefined && isRunning(sidecar)
  return all.filter((process) => !pids.has(process.ppid) && !(sidecarRunning && process.ppid === sidecar))
}

/**
 * Polls /proc every few milliseconds until the running sidecar has a `pgbackrest <command>` child, and
 * returns it (it may have ended by the time the caller looks again).
 */
export const pgbackrestChild = (
  rig: BackupRig,
  command: string,
  timeoutMs: number,
): Effect.Effect<SidecarPgBackRest, RigError> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const sidecar = rig.sidecar.pid()
      const child = sidecarPgBackRest(rig).find(
        (process) => process.ppid === sidecar && process.args.startsWith(`pgbackrest ${command}`),
      )
      if (child !== undefined) {
        return child
      }
      if (Date.now() > deadline) {
        return yield* Effect.fail(
          rigError(
            "pgbackrest child",
            `no pgbackrest ${command} child of the sidecar within ${timeoutMs} ms`,
          ),
        )
      }
      yield* Effect.sleep("3 millis")
    }
  }).pipe(withLiveClock)
