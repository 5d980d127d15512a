import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Status } from "nice-grpc"
import { ANNOTATION_BACKUP_UID } from "../../src/instance/backupResult.js"
import {
  assertResultMatches,
  type BackupCall,
  byUid,
  infoBackups,
  refused,
  succeeded,
} from "../e2e/backupSupport.js"
import { withLiveClock } from "../rig/exec.js"
import {
  type FaultRig,
  finishFault,
  orphanedPgBackRest,
  sidecarPgBackRest,
  startFaultRig,
} from "./harness.js"

/**
 * Two Backup.Backup calls sent at once, as when a ScheduledBackup fires while someone creates a Backup
 * by hand. The Backup service takes one backup per stanza at a time and refuses another at once with
 * FAILED_PRECONDITION (src/instance/backup.ts, `exclusive`) rather than queueing it for hours.
 */
const concurrentPair = (
  rig: FaultRig,
  parameters: readonly [Readonly<Record<string, string>>, Readonly<Record<string, string>>],
) =>
  Effect.gen(function* () {
    const before = yield* infoBackups(rig.env)
    const startedAt = Date.now()
    const calls = yield* Effect.all([rig.backup(parameters[0]), rig.backup(parameters[1])], {
      concurrency: 2,
    })
    const winners = calls.filter((call) => call.ok)
    const losers = calls.filter((call) => !call.ok)
    assert.lengthOf(
      winners,
      1,
      `exactly one of two concurrent backups succeeds: ${JSON.stringify(calls.map(describe))}`,
    )
    assert.lengthOf(losers, 1)
    const [winner] = winners
    const [loser] = losers
    if (winner === undefined || loser === undefined) return assert.fail("unreachable")
    const refusal = refused(loser)
    assert.strictEqual(refusal.code, Status.FAILED_PRECONDITION, refusal.details)
    assert.strictEqual(refusal.details, "a backup of stanza main is already running on this instance")

    const after = yield* infoBackups(rig.env)
    const winnerIndex = calls.indexOf(winner)
    const repository = Number(parameters[winnerIndex]?.selectedRepository ?? "1")
    assertResultMatches(succeeded(winner), byUid(after, repository, winner.uid), {
      repository,
      type: "full",
    })
    // The refused call left nothing: no backup carries its uid, and only the winner's was added.
    assert.notInclude(
      after.map((backup) => backup.annotation?.[ANNOTATION_BACKUP_UID]),
      loser.uid,
      "a backup annotated with the refused call's uid",
    )
    assert.deepStrictEqual(
      after.map((backup) => backup.label).filter((label) => !before.some((b) => b.label === label)),
      [succeeded(winner).backupId],
    )
    assert.deepStrictEqual(
      sidecarPgBackRest(rig).filter((process) => / backup\b/.test(process.args)),
      [],
    )
    assert.deepStrictEqual(orphanedPgBackRest(rig), [])
    return { winner, loser, refusedAt: startedAt + loser.ms }
  })

const describe = (call: BackupCall) =>
  call.ok ? `${call.uid}: ok ${call.result.backupId}` : `${call.uid}: ${Status[call.code]} ${call.details}`

layer(NodeContext.layer)("fault: two backups requested at once, under load", (it) => {
  it.scoped("one is taken, the other refused at once, and the next one is taken", () =>
    Effect.gen(function* () {
      const rig = yield* startFaultRig({ bucket: "fault-two-backups" })
      yield* Effect.sleep("3 seconds")

      // The same request twice (the default: a full backup to repository 1), then one to each repository:
      // the lock is the stanza's, whatever the repository.
      const same = yield* concurrentPair(rig, [{}, {}])
      const split = yield* concurrentPair(rig, [{ selectedRepository: "1" }, { selectedRepository: "2" }])

      const next = yield* rig.backup({ selectedRepository: "2" })
      const nextResult = succeeded(next)
      const recovered = (Date.now() - split.refusedAt) / 1000
      assertResultMatches(nextResult, byUid(yield* infoBackups(rig.env), 2, next.uid), {
        repository: 2,
        type: "full",
      })
      for (const [name, pair] of [
        ["same request", same],
        ["repositories 1 and 2", split],
      ] as const) {
        console.log(
          `two backups (${name}): the refusal came in ${pair.loser.ms} ms, ` +
            `the backup taken in ${pair.winner.ms} ms (${succeeded(pair.winner).backupId})`,
        )
      }
      console.log(`the next backup: ${next.ms} ms (${nextResult.backupId})`)
      yield* finishFault(rig, "two backups requested at once (twice)", recovered)
    }).pipe(withLiveClock),
  )
})
