import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import {
  archivedThroughNudged,
  missingSegments,
  stanzaInitialisedCount,
  startArchivingCluster,
} from "./support.js"

layer(NodeContext.layer)(
  "a repository that loses its stanza (real PostgreSQL, pgBackRest, HTTPS S3)",
  (it) => {
    it.scoped(
      "with two repositories, archiving re-initialises the wiped one and every segment reaches both",
      () =>
        Effect.gen(function* () {
          const { dirs, pg, sidecar, env } = yield* startArchivingCluster({ bucket: "lost-stanza" })
          const first = yield* pg.switchWal()
          yield* archivedThroughNudged(pg, first)

          // Someone empties the posix repository (its archive.info and backup.info go with it).
          for (const entry of fs.readdirSync(dirs.posixRepo)) {
            fs.rmSync(path.join(dirs.posixRepo, entry), { recursive: true, force: true })
          }
          const second = yield* pg.switchWal()
          yield* archivedThroughNudged(pg, second)

          assert.deepStrictEqual(yield* missingSegments(env, 1, [first, second]), [])
          assert.deepStrictEqual(yield* missingSegments(env, 2, [second]), [])
          // Initialised at the first segment, then once more for the wiped repository.
          assert.strictEqual(stanzaInitialisedCount(yield* sidecar.log()), 2)
        }),
    )
  },
)
