import { Effect } from "effect"
import { type RigError, rigError, withLiveClock } from "../rig/exec.js"
import type { Postgres } from "../rig/postgres.js"

export interface ArchiverStats {
  readonly archived: number
  readonly failed: number
  readonly lastArchived: string
}

export const archiverStats = (pg: Postgres): Effect.Effect<ArchiverStats, RigError> =>
  pg
    .psql(
      "SELECT archived_count || '|' || failed_count || '|' || coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    )
    .pipe(
      Effect.map((line) => {
        const [archived = "0", failed = "0", lastArchived = ""] = line.split("|")
        return { archived: Number(archived), failed: Number(failed), lastArchived }
      }),
    )

/** Polls until `condition` holds, on the real clock; fails naming `what` after `timeoutMs`. */
export const eventually = <A, E>(
  what: string,
  probe: Effect.Effect<A, E>,
  condition: (value: A) => boolean,
  timeoutMs = 60_000,
): Effect.Effect<A, E | RigError> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    let last: A = yield* probe
    while (!condition(last)) {
      if (Date.now() > deadline) {
        return yield* Effect.fail(rigError("eventually", `${what} (last seen: ${JSON.stringify(last)})`))
      }
      yield* Effect.sleep("100 millis")
      last = yield* probe
    }
    return last
  }).pipe(withLiveClock)

/** Waits until PostgreSQL reports `segment` (or a later one) as archived. */
export const archivedThrough = (pg: Postgres, segment: string, timeoutMs = 60_000) =>
  eventually(
    `PostgreSQL to archive ${segment}`,
    archiverStats(pg),
    (stats) => stats.lastArchived >= segment,
    timeoutMs,
  )
