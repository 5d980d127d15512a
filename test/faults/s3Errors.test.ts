import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Console, Deferred, Effect } from "effect"
import { archiverStats, readySegments } from "../e2e/support.js"
import { withLiveClock } from "../rig/exec.js"
import * as FaultProxy from "../rig/faultProxy.js"
import { archiveFailures, backlogCleared, finishFault, startFaultRig } from "./harness.js"

layer(NodeContext.layer)("fault: the S3 endpoint answering 500 and 503 for 30 s under load", (it) => {
  it.scoped("every segment reaches both repositories and a restore to latest holds every row", () =>
    Effect.gen(function* () {
      const proxied = yield* Deferred.make<FaultProxy.FaultProxy>()
      const rig = yield* startFaultRig({
        bucket: "fault-s3-errors",
        // pgBackRest retries a 5xx answer itself until io-timeout (60 s by default), for archive.info and
        // its copy in turn, and the plugin runs a push failing with ServiceError twice more. With 5 s, one
        // WAL.Archive call outlasted the 30 s of errors and PostgreSQL never saw a failure; with 1 s (as in
        // the S3-down fault) the calls fail within seconds and PostgreSQL retries the segment itself.
        stanza: () => ({ customEnvVar: { PGBACKREST_IO_TIMEOUT: "1" } }),
        prepare: FaultProxy.interposeOn(proxied),
      })
      const proxy = yield* Deferred.await(proxied)
      yield* Effect.sleep("3 seconds")
      const before = yield* archiverStats(rig.pg)
      const healthy = yield* proxy.counts()
      assert.isAbove(before.archived, 0, "nothing was archived before the fault")
      assert.isAbove(healthy.forwarded, 0, "the sidecar did not reach S3 through the proxy")
      assert.strictEqual(healthy.failed, 0)

      // Every request, whatever it is (HEAD of archive.info, GET, PUT of a segment), answered 503
      // SlowDown and 500 InternalError in turn, with S3's XML error document.
      const logBefore = (yield* rig.sidecar.log()).length
      yield* proxy.setMode("alternate")
      yield* Effect.sleep("30 seconds")
      const during = yield* archiverStats(rig.pg)
      const backlog = yield* readySegments(rig.pg)
      const faulted = yield* proxy.counts()
      yield* proxy.setMode("pass")
      const faultEndedAt = Date.now()

      assert.isAbove(faulted.slowDown, 0, "no request was answered 503 SlowDown")
      assert.isAbove(faulted.internalError, 0, "no request was answered 500 InternalError")
      // The fault must have been felt: PostgreSQL's archive_command failed, and segments piled up.
      assert.isAbove(during.failed, before.failed, "archive_command never failed while S3 answered errors")
      assert.isAtMost(during.archived - before.archived, 1, "archiving went on while S3 answered errors")
      assert.isAtLeast(backlog.length, 5, "no backlog built up while S3 answered errors")

      const recovered = yield* backlogCleared(rig, faultEndedAt)
      const failures = archiveFailures((yield* rig.sidecar.log()).slice(logBefore))
      yield* Console.log(
        `S3 errors: the proxy failed ${faulted.failed} requests (${faulted.slowDown} x 503 SlowDown, ` +
          `${faulted.internalError} x 500 InternalError); during the fault archive_command failed ` +
          `${during.failed - before.failed} times and archived ${during.archived - before.archived} segments, ` +
          `${backlog.length} were waiting at its end; WAL.Archive failures since it began: ` +
          `${failures.length} (${[...new Set(failures)].join(" | ")})`,
      )
      // pgBackRest saw the 5xx answers as such (not as a broken connection): what the plugin retries.
      assert.isTrue(
        failures.some((failure) => failure.includes("repo1: [ServiceError]")),
        `no archive-push failed with a ServiceError: ${JSON.stringify(failures)}`,
      )
      yield* finishFault(rig, "S3 answering 503/500 for 30 s", recovered)
      // Nothing failed once the fault was over: the proxy's count stayed where the fault left it.
      assert.strictEqual((yield* proxy.counts()).failed, faulted.failed)
    }).pipe(withLiveClock),
  )
})
