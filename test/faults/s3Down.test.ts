import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { archiverStats, readySegments } from "../e2e/support.js"
import { withLiveClock } from "../rig/exec.js"
import { backlogCleared, finishFault, startFaultRig } from "./harness.js"

layer(NodeContext.layer)("fault: the S3 endpoint stopped for 30 s under load", (it) => {
  it.scoped("every segment reaches both repositories and a restore to latest holds every row", () =>
    Effect.gen(function* () {
      const rig = yield* startFaultRig({
        bucket: "fault-s3-down",
        // A refused connection fails a push in seconds instead of pgBackRest's default minute.
        stanza: () => ({ customEnvVar: { PGBACKREST_IO_TIMEOUT: "1" } }),
      })
      yield* Effect.sleep("3 seconds")
      const before = yield* archiverStats(rig.pg)
      assert.isAbove(before.archived, 0, "nothing was archived before the fault")
      yield* rig.s3.stop()
      yield* Effect.sleep("30 seconds")
      // The fault must have been felt: PostgreSQL could not archive, and kept a backlog of segments.
      const during = yield* archiverStats(rig.pg)
      assert.isAtMost(during.archived - before.archived, 1, "archiving went on while S3 was down")
      assert.isAtLeast((yield* readySegments(rig.pg)).length, 10, "no backlog built up while S3 was down")
      yield* rig.s3.start()
      const recovered = yield* backlogCleared(rig, Date.now())
      yield* finishFault(rig, "S3 endpoint stopped for 30 s", recovered)
    }).pipe(withLiveClock),
  )
})
