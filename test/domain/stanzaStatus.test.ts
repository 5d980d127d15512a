import { assert, describe, it } from "@effect/vitest"
import {
  backupCounts,
  type Condition,
  firstRecoverabilityPoint,
  type InfoOutcome,
  recoveryWindow,
  repositoryKeys,
  type StanzaObservation,
  stanzaStatus,
  storedConditions,
} from "../../src/domain/stanzaStatus.js"
import { type InfoFixture, infoStanza } from "../fixtures/pgbackrest-info/load.js"

const NOW = new Date("2024-05-02T14:10:00Z")

const listed = (name: InfoFixture): InfoOutcome => ({ _tag: "Listed", stanza: infoStanza(name) })

const observation = (info: InfoOutcome, overrides: Partial<StanzaObservation> = {}): StanzaObservation => ({
  info,
  lastArchived: undefined,
  lastArchiveFailure: undefined,
  archiveFailures: 0,
  lastSucceeded: undefined,
  lastFailed: undefined,
  ...overrides,
})

const condition = (
  status: Condition["status"],
  type = "Ready",
  since = "2024-05-01T00:00:00Z",
): Condition => ({
  type,
  status,
  reason: "Earlier",
  message: "earlier",
  lastTransitionTime: since,
})

describe("stanzaStatus", () => {
  it("two repositories: the window spans both, counts by type, the sidecar's last events", () => {
    const status = stanzaStatus(
      observation(listed("two-repositories"), {
        lastArchived: { walName: "00000001000000000000000A", at: new Date("2024-05-02T14:05:00.250Z") },
        lastSucceeded: {
          backupName: "pg-20240502140000",
          label: "20240501-100002F_20240502-140002I",
          at: new Date("2024-05-02T14:00:20Z"),
        },
        lastFailed: {
          backupName: "pg-20240502130000",
          at: new Date("2024-05-02T13:00:05Z"),
          error: "pgbackrest backup failed with exit code 82: ERROR: [082]: WAL segment was not archived",
        },
      }),
      [],
      NOW,
    )
    assert.deepStrictEqual(status, {
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "BackupsAvailable",
          message: "4 backups in repositories 1, 2; recoverable from 2024-05-01T10:01:14Z",
          lastTransitionTime: "2024-05-02T14:10:00Z",
        },
        {
          type: "ContinuousArchiving",
          status: "True",
          reason: "ContinuousArchivingSuccess",
          message: "00000001000000000000000A archived at 2024-05-02T14:05:00Z",
          lastTransitionTime: "2024-05-02T14:10:00Z",
        },
      ],
      recoveryWindow: {
        firstBackup: {
          label: "20240501-100002F",
          type: "full",
          startTime: "2024-05-01T10:00:02Z",
          stopTime: "2024-05-01T10:01:14Z",
          beginLSN: "0/2000028",
          endLSN: "0/2000138",
          beginWAL: "000000010000000000000002",
          endWAL: "000000010000000000000002",
          repository: 1,
        },
        lastBackup: {
          label: "20240501-100002F_20240502-140002I",
          type: "incr",
          startTime: "2024-05-02T14:00:02Z",
          stopTime: "2024-05-02T14:00:19Z",
          beginLSN: "0/9000028",
          endLSN: "0/9000100",
          beginWAL: "000000010000000000000009",
          endWAL: "000000010000000000000009",
          repository: 1,
        },
      },
      firstRecoverabilityPoint: "2024-05-01T10:01:14Z",
      backups: { full: 2, diff: 1, incr: 1 },
      repositories: [
        {
          repository: 1,
          status: "ok",
          backups: { full: 1, diff: 1, incr: 1 },
          firstWAL: "000000010000000000000001",
          lastWAL: "00000001000000000000000A",
        },
        {
          repository: 2,
          status: "ok",
          backups: { full: 1, diff: 0, incr: 0 },
          firstWAL: "000000010000000000000007",
          lastWAL: "00000001000000000000000A",
        },
      ],
      lastArchivedWAL: "00000001000000000000000A",
      lastArchivedTime: "2024-05-02T14:05:00Z",
      lastSuccessfulBackup: {
        name: "pg-20240502140000",
        label: "20240501-100002F_20240502-140002I",
        time: "2024-05-02T14:00:20Z",
      },
      lastFailedBackup: {
        name: "pg-20240502130000",
        time: "2024-05-02T13:00:05Z",
        error: "pgbackrest backup failed with exit code 82: ERROR: [082]: WAL segment was not archived",
      },
    })
  })

  it("the window does not depend on the order info lists the backups in", () => {
    const stanza = infoStanza("two-repositories")
    const reversed = { ...stanza, backup: [...stanza.backup].reverse() }
    assert.strictEqual(recoveryWindow(reversed)?.first.label, "20240501-100002F")
    assert.strictEqual(recoveryWindow(reversed)?.last.label, "20240501-100002F_20240502-140002I")
    assert.strictEqual(firstRecoverabilityPoint(reversed), 1714557674)
    assert.deepStrictEqual(repositoryKeys(reversed), [1, 2])
    assert.deepStrictEqual(backupCounts(reversed, 2), { full: 1, diff: 0, incr: 0 })
  })

  it("no backups yet: Ready is False (NoValidBackup) and the window is removed (null)", () => {
    const status = stanzaStatus(observation(listed("no-backups")), [], NOW)
    assert.deepStrictEqual(status.conditions, [
      {
        type: "Ready",
        status: "False",
        reason: "NoValidBackup",
        message: "no valid backups; repo1: no valid backups",
        lastTransitionTime: "2024-05-02T14:10:00Z",
      },
    ])
    assert.isNull(status.recoveryWindow)
    assert.isNull(status.firstRecoverabilityPoint)
    assert.deepStrictEqual(status.backups, { full: 0, diff: 0, incr: 0 })
    assert.deepStrictEqual(status.repositories, [
      {
        repository: 1,
        status: "no valid backups",
        backups: { full: 0, diff: 0, incr: 0 },
        firstWAL: "000000010000000000000001",
        lastWAL: "000000010000000000000004",
      },
    ])
  })

  it("one repository unreachable: Ready is False and names it with pgBackRest's error", () => {
    const status = stanzaStatus(observation(listed("mixed-repositories")), [], NOW)
    const [ready] = status.conditions
    assert.strictEqual(ready?.status, "False")
    assert.strictEqual(ready?.reason, "RepositoriesDiffer")
    assert.strictEqual(
      ready?.message,
      "different across repos; repo2: [HostConnectError] unable to connect to 'minio.minio.svc:9000': [111] Connection refused",
    )
    assert.strictEqual(status.recoveryWindow?.firstBackup.label, "20240501-100002F")
    assert.deepStrictEqual(
      status.repositories?.map((repository) => [repository.repository, repository.lastWAL]),
      [
        [1, "000000010000000000000006"],
        [2, null],
      ],
    )
  })

  it("a repository without the stanza is not Ready, and holds nothing", () => {
    const missing = stanzaStatus(observation(listed("missing-stanza")), [], NOW)
    assert.deepInclude(missing.conditions[0], {
      status: "False",
      reason: "StanzaPathMissing",
      message: "missing stanza path; repo1: missing stanza path",
    })
    assert.isNull(missing.recoveryWindow)
    assert.deepStrictEqual(missing.repositories, [
      {
        repository: 1,
        status: "missing stanza path",
        backups: { full: 0, diff: 0, incr: 0 },
        firstWAL: null,
        lastWAL: null,
      },
    ])
  })

  it("info failed: Ready is False with the error, and the repositories' fields are left as they were", () => {
    const info: InfoOutcome = {
      _tag: "Failed",
      reason: "PgBackRestTimeout",
      message: "pgbackrest info did not finish within 120000 ms and was stopped",
    }
    const status = stanzaStatus(observation(info), [condition("True")], NOW)
    assert.deepStrictEqual(status, {
      conditions: [
        {
          type: "Ready",
          status: "False",
          reason: "PgBackRestTimeout",
          message: "pgbackrest info did not finish within 120000 ms and was stopped",
          lastTransitionTime: "2024-05-02T14:10:00Z",
        },
      ],
    })
  })

  it("lastTransitionTime moves only when a condition's status changes", () => {
    const previous = [condition("True"), condition("False", "ContinuousArchiving")]
    const status = stanzaStatus(
      observation(listed("two-repositories"), {
        lastArchived: { walName: "000000010000000000000009", at: new Date("2024-05-02T14:00:00Z") },
      }),
      previous,
      NOW,
    )
    assert.deepStrictEqual(
      status.conditions.map((c) => [c.type, c.status, c.reason, c.lastTransitionTime]),
      [
        ["Ready", "True", "BackupsAvailable", "2024-05-01T00:00:00Z"],
        ["ContinuousArchiving", "True", "ContinuousArchivingSuccess", "2024-05-02T14:10:00Z"],
      ],
    )
  })

  it("ContinuousArchiving: False after a newer failure, kept as it was when nothing happened yet", () => {
    const failing = stanzaStatus(
      observation(listed("two-repositories"), {
        lastArchived: { walName: "000000010000000000000009", at: new Date("2024-05-02T14:00:00Z") },
        lastArchiveFailure: {
          walName: "00000001000000000000000A",
          at: new Date("2024-05-02T14:01:00Z"),
          error: "x".repeat(5000),
        },
      }),
      [],
      NOW,
    )
    const archiving = failing.conditions[1]
    assert.strictEqual(archiving?.status, "False")
    assert.strictEqual(archiving?.reason, "ContinuousArchivingFailing")
    assert.isTrue(
      archiving?.message.startsWith("archiving 00000001000000000000000A failed at 2024-05-02T14:01:00Z: xxx"),
    )
    assert.strictEqual(archiving?.message.length, 1000, "a long stderr tail is clipped")

    const previous = condition("False", "ContinuousArchiving")
    const restarted = stanzaStatus(observation(listed("two-repositories")), [previous], NOW)
    assert.deepStrictEqual(restarted.conditions[1], previous)
    assert.notProperty(restarted, "lastArchivedWAL")
    assert.notProperty(restarted, "lastFailedBackup")
  })

  it("storedConditions reads them from a Stanza object, and nothing from anything else", () => {
    const conditions = [condition("True")]
    assert.deepStrictEqual(
      storedConditions({ metadata: { name: "main" }, status: { conditions } }),
      conditions,
    )
    assert.deepStrictEqual(storedConditions({ metadata: { name: "main" } }), [])
    assert.deepStrictEqual(storedConditions({ status: { conditions: [{ type: "Ready" }] } }), [])
    assert.deepStrictEqual(storedConditions("not an object"), [])
  })
})
