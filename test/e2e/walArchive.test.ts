import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { PostgresCluster, S3Endpoint } from "../rig/index.js"
import { preparePlugin, sidecarFor } from "../rig/plugin.js"
import { archivedThrough, assertInBothRepositories } from "./support.js"

layer(NodeContext.layer)(
  "WAL archiving through the sidecar (real PostgreSQL, pgBackRest, HTTPS S3)",
  (it) => {
    it.scoped("every segment PostgreSQL archives through the plugin is in both repositories", () =>
      Effect.gen(function* () {
        const s3 = yield* S3Endpoint.make({ bucket: "wal-archive" })
        const dirs = yield* preparePlugin({ s3 })
        const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: dirs.archiveCommand })
        const sidecar = yield* sidecarFor(dirs, pg)
        yield* sidecar.start()

        const segments: Array<string> = []
        for (let i = 0; i < 5; i++) {
          segments.push(yield* pg.switchWal())
        }
        const last = segments[segments.length - 1] ?? ""
        yield* archivedThrough(pg, last)

        // Checked with pgBackRest itself, not through the plugin.
        yield* assertInBothRepositories(pg, s3, dirs, segments)
        const log = yield* sidecar.log()
        assert.strictEqual(
          log.split("\n").filter((line) => line.includes('"msg":"stanza initialised"')).length,
          1,
        )
      }),
    )
  },
)
