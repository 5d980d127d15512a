import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import { assert } from "@effect/vitest"
import { Deferred, Effect, Fiber, type Scope } from "effect"
import { type BackupRig, makeBackupRig, succeeded } from "../e2e/backupSupport.js"
import {
  archivedThrough,
  missingSegments,
  readySegments,
  restoreCluster,
  segmentRange,
  writeRestoredCluster,
} from "../e2e/support.js"
import { type RigError, rigError, withLiveClock } from "../rig/exec.js"
import type { PluginDirs } from "../rig/plugin.js"
import type { Postgres } from "../rig/postgres.js"
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
}): Effect.Effect<FaultRig, RigError, Scope.Scope | FileSystem.FileSystem | CommandExecutor> =>
  Effect.gen(function* () {
    const rig = yield* makeBackupRig({
      bucket: options.bucket,
      ...(options.stanza === undefined ? {} : { stanza: options.stanza }),
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
