import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { PostgresCluster, S3Endpoint } from "../rig/index.js"
import { preparePlugin, sidecarFor } from "../rig/plugin.js"
import {
  archivedThrough,
  eventually,
  missingSegments,
  pgbackrestProcesses,
  segmentRange,
  stanzaInitialisedCount,
  verificationEnv,
  watchPgBackRest,
} from "./support.js"

layer(NodeContext.layer)("asynchronous WAL archiving (real PostgreSQL, pgBackRest, HTTPS S3)", (it) => {
  it.scoped("with archive.async and processMax 2, segments reach both repositories through the spool", () =>
    Effect.gen(function* () {
      const s3 = yield* S3Endpoint.make({ bucket: "wal-async" })
      const dirs = yield* preparePlugin({
        s3,
        stanza: { archive: { async: true, pushQueueMax: "1GiB" }, processMax: 2 },
      })
      const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: dirs.archiveCommand })
      const sidecar = yield* sidecarFor(dirs, pg)
      // The async worker detaches (setsid) from the sidecar's archive-push: find it by its environment.
      const marker = `PGBACKREST_SPOOL_PATH=${dirs.spoolDir}`
      const seen = yield* watchPgBackRest(marker)
      yield* sidecar.start()

      const segments: Array<string> = []
      for (let i = 0; i < 6; i++) {
        segments.push(yield* pg.switchWal())
      }
      const first = segments[0] ?? ""
      const last = segments[segments.length - 1] ?? ""
      yield* archivedThrough(pg, last)

      // pgBackRest's async mode ran: its worker pushed from pg_wal with two local processes, and the
      // foreground archive-push answered from the status files it left in the spool.
      const commands = seen()
      assert.isTrue(
        commands.some((args) => args.endsWith(`archive-push:async ${pg.pgdata}/pg_wal`)),
        `no async worker among ${JSON.stringify(commands)}`,
      )
      for (const local of ["--process=1 ", "--process=2 "]) {
        assert.isTrue(
          commands.some((args) => args.includes(local) && args.endsWith("archive-push:local")),
          `no local process ${local.trim()} among ${JSON.stringify(commands)}`,
        )
      }
      const out = path.join(dirs.spoolDir, "archive", "main", "out")
      const status = fs.readdirSync(out)
      // Each run of the worker drops the .ok files of segments PostgreSQL has since marked done, so only
      // the last one is certain to be there; none may be an error.
      assert.include(status, `${last}.ok`)
      assert.deepStrictEqual(
        status.filter((name) => !segments.some((segment) => name === `${segment}.ok`)),
        [],
      )
      assert.strictEqual(fs.statSync(out).uid, fs.statSync(dirs.spoolDir).uid)

      const env = yield* verificationEnv(pg, s3, [
        { kind: "s3", path: dirs.s3RepoPath },
        { kind: "posix", path: dirs.posixRepo },
      ])
      for (const repo of [1, 2]) {
        assert.deepStrictEqual(
          yield* missingSegments(env, repo, segmentRange(first, last)),
          [],
          `repo ${repo}`,
        )
      }
      assert.strictEqual(stanzaInitialisedCount(yield* sidecar.log()), 1)
      // The detached worker ends on its own once the queue is empty.
      yield* eventually(
        "the async worker to exit",
        Effect.sync(() => pgbackrestProcesses(marker)),
        (processes) => processes.length === 0,
        15_000,
      )
    }),
  )
})
