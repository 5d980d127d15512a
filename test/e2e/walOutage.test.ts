import * as fs from "node:fs"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import type { Postgres } from "../rig/postgres.js"
import {
  archivedThroughNudged,
  archiveGet,
  archiverStats,
  eventually,
  missingSegments,
  readySegments,
  segmentRange,
  startArchivingCluster,
} from "./support.js"

/**
 * What PostgreSQL 15's archiver does with a failing archive_command (checked with this rig): three tries
 * about a second apart (each counted in pg_stat_archiver.failed_count), then a sleep of up to 60 s.
 * Writing WAL without completing a segment does not end that sleep (the segment was archived 52 s later);
 * a new .ready file (a segment switch) or a signal (`pg_reload_conf()`) does, within about 0.6 s. The
 * tests below wake it with `pg_reload_conf()` (see `archivedThroughNudged`) so as not to wait a minute.
 */

const switchSegments = (pg: Postgres, count: number) =>
  Effect.gen(function* () {
    const segments: Array<string> = []
    for (let i = 0; i < count; i++) {
      segments.push(yield* pg.switchWal())
    }
    return segments
  })

/** The segments are still PostgreSQL's to archive: marked .ready, and the files still in pg_wal. */
const assertKept = (pg: Postgres, segments: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const ready = yield* readySegments(pg)
    for (const segment of segments) {
      assert.include(ready, segment, `${segment} is no longer .ready`)
      assert.isTrue(fs.existsSync(`${pg.pgdata}/pg_wal/${segment}`), `${segment} left pg_wal`)
    }
  })

layer(NodeContext.layer)("WAL archiving through outages (real PostgreSQL, pgBackRest, HTTPS S3)", (it) => {
  it.scoped(
    "an unreachable S3 endpoint or an unwritable posix repository fails archiving; afterwards every segment arrives",
    () =>
      Effect.gen(function* () {
        // pgBackRest retries a refused connection until io-timeout (60 s by default); with 1 s a push to
        // the stopped endpoint fails after about 10 s (it tries both archive.info and its copy, several times).
        const { s3, dirs, pg, env } = yield* startArchivingCluster({
          bucket: "wal-outage",
          stanza: () => ({ customEnvVar: { PGBACKREST_IO_TIMEOUT: "1" } }),
        })
        const inBothRepositories = (first: string, last: string) =>
          Effect.gen(function* () {
            const expected = segmentRange(first, last)
            for (const repo of [1, 2]) {
              assert.deepStrictEqual(
                yield* missingSegments(env, repo, expected),
                [],
                `missing from repo ${repo}`,
              )
            }
          })

        const [first = ""] = yield* switchSegments(pg, 1)
        const [beforeOutage = ""] = yield* switchSegments(pg, 1)
        yield* archivedThroughNudged(pg, beforeOutage)

        // S3 goes away: every archive_command fails, and PostgreSQL keeps the segments and retries.
        yield* s3.stop()
        const healthy = yield* archiverStats(pg)
        const duringOutage = yield* switchSegments(pg, 3)
        const failing = yield* eventually(
          "archiving to fail twice while S3 is down",
          archiverStats(pg),
          (stats) => stats.failed >= healthy.failed + 2,
          60_000,
        )
        assert.strictEqual(failing.lastArchived, beforeOutage)
        assert.strictEqual(failing.archived, healthy.archived)
        yield* assertKept(pg, duringOutage)
        // pgBackRest went on to the posix repository, but one repository is not "archived".
        const [firstDuring = ""] = duringOutage
        assert.strictEqual(yield* archiveGet(env, 2, firstDuring, pg.baseDir), 0, `${firstDuring} in repo 2`)
        assert.strictEqual((yield* archiverStats(pg)).lastArchived, beforeOutage)

        yield* s3.start()
        const lastDuring = duringOutage[duringOutage.length - 1] ?? ""
        yield* archivedThroughNudged(pg, lastDuring)
        yield* inBothRepositories(first, lastDuring)

        // The posix repository refuses writes: the sidecar runs as postgres, root takes the permissions
        // away (and gives them back, also if the test fails).
        const mode = fs.statSync(dirs.posixRepo).mode & 0o777
        yield* Effect.acquireRelease(
          Effect.sync(() => fs.chmodSync(dirs.posixRepo, 0o000)),
          () => Effect.sync(() => fs.chmodSync(dirs.posixRepo, mode)),
        )
        const writable = yield* archiverStats(pg)
        const blocked = yield* switchSegments(pg, 2)
        const refused = yield* eventually(
          "archiving to fail twice while the posix repository is unwritable",
          archiverStats(pg),
          (stats) => stats.failed >= writable.failed + 2,
          60_000,
        )
        assert.strictEqual(refused.lastArchived, lastDuring)
        yield* assertKept(pg, blocked)
        // The segment is already in S3, and still not reported archived.
        const [firstBlocked = ""] = blocked
        assert.strictEqual(
          yield* archiveGet(env, 1, firstBlocked, pg.baseDir),
          0,
          `${firstBlocked} in repo 1`,
        )
        assert.strictEqual((yield* archiverStats(pg)).lastArchived, lastDuring)

        fs.chmodSync(dirs.posixRepo, mode)
        const lastBlocked = blocked[blocked.length - 1] ?? ""
        yield* archivedThroughNudged(pg, lastBlocked)
        yield* inBothRepositories(first, lastBlocked)
        assert.deepStrictEqual(yield* readySegments(pg), [])
      }),
  )
})
