import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import type { InfoBackup } from "../../src/domain/pgbackrestInfo.js"
import { chooseBackup, parseTargetTime, restoreConfig } from "../../src/domain/restoreTarget.js"

const backup = (
  label: string,
  stop: number,
  lsnStop: string,
  repo = 1,
  extra: Partial<InfoBackup> = {},
): InfoBackup => ({
  label,
  type: "full",
  prior: null,
  timestamp: { start: stop - 60, stop },
  archive: { start: "000000010000000000000002", stop: "000000010000000000000003" },
  lsn: { start: "0/2000028", stop: lsnStop },
  database: { id: 1, "repo-key": repo },
  ...extra,
})

// 2026-11-24 10:00:00 UTC = 1795514400
const t10 = 1795514400
const backups = [
  backup("20261124-095900F", t10 - 60, "0/3000100"),
  backup("20261124-110000F", t10 + 3600, "0/5000100", 2),
  backup("20261124-120000F", t10 + 7200, "0/7000100"),
  backup("20261124-130000F", t10 + 10800, "0/9000100", 1, { error: true }),
]

const label = (result: ReturnType<typeof chooseBackup>) =>
  Either.isRight(result) ? result.right.label : result.left._tag

describe("chooseBackup", () => {
  it("takes the newest usable backup without a target", () => {
    assert.strictEqual(label(chooseBackup(backups, undefined)), "20261124-120000F")
  })

  it("takes the backup named by backupID, from whichever repository", () => {
    assert.strictEqual(label(chooseBackup(backups, { backupID: "20261124-110000F" })), "20261124-110000F")
    assert.strictEqual(label(chooseBackup(backups, { backupID: "20200101-000000F" })), "NotFound")
  })

  it("takes the newest backup that ends before the target time", () => {
    assert.strictEqual(
      label(chooseBackup(backups, { targetTime: "2026-11-24 11:30:00+00" })),
      "20261124-110000F",
    )
    assert.strictEqual(
      label(chooseBackup(backups, { targetTime: "2026-11-24T10:00:00Z" })),
      "20261124-095900F",
    )
    assert.strictEqual(
      label(chooseBackup(backups, { targetTime: "2026-11-24 09:00:00+00" })),
      "FailedPrecondition",
    )
    assert.strictEqual(label(chooseBackup(backups, { targetTime: "yesterday" })), "InvalidRequest")
  })

  it("takes the newest backup that ends before the target LSN", () => {
    assert.strictEqual(label(chooseBackup(backups, { targetLSN: "0/6000000" })), "20261124-110000F")
    assert.strictEqual(label(chooseBackup(backups, { targetLSN: "0/1000000" })), "FailedPrecondition")
    assert.strictEqual(label(chooseBackup(backups, { targetLSN: "nowhere" })), "InvalidRequest")
  })

  it("never picks a backup pgBackRest marked as erroneous, and fails on an empty stanza", () => {
    assert.notStrictEqual(
      label(chooseBackup(backups, { targetTime: "2026-11-24 14:00:00+00" })),
      "20261124-130000F",
    )
    assert.strictEqual(label(chooseBackup([], undefined)), "FailedPrecondition")
  })
})

describe("restoreConfig", () => {
  it("promotes at the end and restores WAL through CloudNativePG, without recovery targets", () => {
    const config = restoreConfig()
    assert.include(config, "recovery_target_action = promote")
    assert.include(
      config,
      "restore_command = '/controller/manager wal-restore --log-destination /controller/log/postgres.json %f %p'",
    )
    assert.notMatch(config, /recovery_target_(time|lsn|xid|name|inclusive|timeline)/)
  })
})

describe("parseTargetTime", () => {
  it("reads PostgreSQL's and RFC 3339 forms, zone-less as UTC", () => {
    const expected = Date.UTC(2026, 10, 24, 10, 0, 0)
    assert.strictEqual(parseTargetTime("2026-11-24 10:00:00+00"), expected)
    assert.strictEqual(parseTargetTime("2026-11-24 12:00:00+02"), expected)
    assert.strictEqual(parseTargetTime("2026-11-24 15:30:00+05:30"), expected)
    assert.strictEqual(parseTargetTime("2026-11-24T10:00:00Z"), expected)
    assert.strictEqual(parseTargetTime("2026-11-24 10:00:00"), expected)
    assert.strictEqual(parseTargetTime("2026-11-24 10:00:00.000-0100"), expected + 3_600_000)
    assert.isNaN(parseTargetTime("not a time"))
  })
})
