import { Option, Predicate, Schema } from "effect"
import type { BackupType, InfoBackup, InfoStanza } from "./pgbackrestInfo.js"

/**
 * The Stanza's `status`, computed from `pgbackrest info` and from what this sidecar saw happen (the last
 * WAL archived, the last backups). It is written as a JSON merge patch: a field that is `null` here is
 * removed from the stored status (a recovery window whose backups all expired), a field left out is kept
 * as it was (the last failed backup, which a restarted sidecar no longer knows).
 */

export type BackupCounts = { readonly [T in BackupType]: number }

/** A Kubernetes condition (`metav1.Condition` without observedGeneration). */
export const Condition = Schema.Struct({
  type: Schema.String,
  status: Schema.Literal("True", "False", "Unknown"),
  reason: Schema.String,
  message: Schema.String,
  lastTransitionTime: Schema.String,
})
export type Condition = typeof Condition.Type

const StoredConditions = Schema.Struct({
  status: Schema.optional(
    Schema.NullOr(Schema.Struct({ conditions: Schema.optional(Schema.Array(Condition)) })),
  ),
})

/** The conditions a Stanza object (as read from the API) holds; none when they do not decode. */
export const storedConditions = (stanza: unknown): ReadonlyArray<Condition> =>
  Schema.decodeUnknownOption(StoredConditions)(stanza).pipe(
    Option.flatMapNullable((object) => object.status?.conditions),
    Option.getOrElse((): ReadonlyArray<Condition> => []),
  )

export interface StanzaStatusBody {
  readonly conditions: ReadonlyArray<Condition>
  readonly recoveryWindow?: { readonly firstBackup: BackupRef; readonly lastBackup: BackupRef } | null
  readonly firstRecoverabilityPoint?: string | null
  readonly backups?: BackupCounts
  readonly repositories?: ReadonlyArray<RepositoryStatus>
  readonly lastArchivedWAL?: string
  readonly lastArchivedTime?: string
  readonly lastSuccessfulBackup?: { readonly name: string; readonly label?: string; readonly time: string }
  readonly lastFailedBackup?: { readonly name: string; readonly time: string; readonly error: string }
}

/** What `pgbackrest info` said about the stanza, or why it could not be asked (or did not list it). */
export type InfoOutcome =
  | { readonly _tag: "Listed"; readonly stanza: InfoStanza }
  | { readonly _tag: "Failed"; readonly reason: string; readonly message: string }

export interface WalEvent {
  readonly walName: string
  readonly at: Date
  readonly error?: string
}
export interface BackupEvent {
  readonly backupName: string
  readonly at: Date
  readonly label?: string
  readonly error?: string
}

/** Everything the status and the metrics are computed from. */
export interface StanzaObservation {
  readonly info: InfoOutcome
  readonly lastArchived: WalEvent | undefined
  readonly lastArchiveFailure: WalEvent | undefined
  /** Failed WAL.Archive calls since this sidecar started. */
  readonly archiveFailures: number
  readonly lastSucceeded: BackupEvent | undefined
  readonly lastFailed: BackupEvent | undefined
}

export const READY = "Ready"
export const CONTINUOUS_ARCHIVING = "ContinuousArchiving"
const CONDITION_TYPES = [READY, CONTINUOUS_ARCHIVING]

/** Condition messages and backup errors can carry a long stderr tail: the status keeps its start. */
const MESSAGE_LIMIT = 1000
const clip = (text: string) => (text.length > MESSAGE_LIMIT ? `${text.slice(0, MESSAGE_LIMIT - 3)}...` : text)

/** RFC 3339 at second precision, as Kubernetes writes times: `2024-05-01T10:00:02Z`. */
export const rfc3339 = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, "Z")
const fromUnix = (seconds: number) => rfc3339(new Date(seconds * 1000))

/** pgBackRest's stanza status codes (command/info/info.c) as condition reasons. */
const REASONS: Readonly<Record<number, string>> = {
  1: "StanzaPathMissing",
  2: "NoValidBackup",
  3: "StanzaDataMissing",
  4: "RepositoriesDiffer",
  5: "DatabaseMismatch",
  6: "BackupNotFound",
}

/** The oldest and the newest backup across repositories: recovery can reach any point between. */
export const recoveryWindow = (
  stanza: InfoStanza,
): { readonly first: InfoBackup; readonly last: InfoBackup } | undefined => {
  const [head, ...rest] = stanza.backup
  if (head === undefined) {
    return undefined
  }
  const start = (backup: InfoBackup) => backup.timestamp.start
  return {
    first: rest.reduce((first, backup) => (start(backup) < start(first) ? backup : first), head),
    last: rest.reduce((last, backup) => (start(backup) > start(last) ? backup : last), head),
  }
}

/**
 * The earliest time a recovery can target, in unix seconds: the end of the oldest backup, where its
 * restore becomes consistent (CloudNativePG's barman catalog also uses the end time).
 */
export const firstRecoverabilityPoint = (stanza: InfoStanza): number | undefined =>
  recoveryWindow(stanza)?.first.timestamp.stop

/** Every repository `info` mentions, in pgBackRest's numbering. */
export const repositoryKeys = (stanza: InfoStanza): ReadonlyArray<number> => {
  const keys = new Set<number>(stanza.repo?.map((repo) => repo.key))
  for (const entry of [...stanza.archive, ...stanza.backup]) {
    keys.add(entry.database["repo-key"])
  }
  return [...keys].sort((a, b) => a - b)
}

/** Backup counts per type, of one repository or of all. */
export const backupCounts = (stanza: InfoStanza, repository?: number): BackupCounts => {
  const counts = { full: 0, diff: 0, incr: 0 }
  for (const backup of stanza.backup) {
    if (repository === undefined || backup.database["repo-key"] === repository) {
      counts[backup.type] += 1
    }
  }
  return counts
}

/** One repository in the status; `null` WAL when its archive is empty. */
const repositoryStatus = (stanza: InfoStanza, key: number) => {
  // After a stanza-upgrade the archive lists one entry per PostgreSQL version: the newest is current.
  const archive = stanza.archive
    .filter((entry) => entry.database["repo-key"] === key)
    .sort((a, b) => b.database.id - a.database.id)[0]
  return {
    repository: key,
    status: stanza.repo?.find((repo) => repo.key === key)?.status.message ?? stanza.status.message,
    backups: backupCounts(stanza, key),
    firstWAL: archive?.min ?? null,
    lastWAL: archive?.max ?? null,
  }
}

/** A backup as the status shows it; `null` where pgBackRest did not record the value. */
const backupRef = (backup: InfoBackup) => ({
  label: backup.label,
  type: backup.type,
  startTime: fromUnix(backup.timestamp.start),
  stopTime: fromUnix(backup.timestamp.stop),
  beginLSN: backup.lsn?.start ?? null,
  endLSN: backup.lsn?.stop ?? null,
  beginWAL: backup.archive.start,
  endWAL: backup.archive.stop,
  repository: backup.database["repo-key"],
})

export type BackupRef = ReturnType<typeof backupRef>
export type RepositoryStatus = ReturnType<typeof repositoryStatus>

type ConditionValue = Omit<Condition, "lastTransitionTime">

const readyCondition = (observation: StanzaObservation): ConditionValue => {
  const { info } = observation
  if (info._tag === "Failed") {
    return { type: READY, status: "False", reason: info.reason, message: clip(info.message) }
  }
  const { stanza } = info
  if (stanza.status.code === 0) {
    const total = stanza.backup.length
    const since = firstRecoverabilityPoint(stanza)
    const message =
      `${total} backup${total === 1 ? "" : "s"} in repositories ${repositoryKeys(stanza).join(", ")}` +
      (since === undefined ? "" : `; recoverable from ${fromUnix(since)}`)
    return { type: READY, status: "True", reason: "BackupsAvailable", message }
  }
  const failing = (stanza.repo ?? [])
    .filter((repo) => repo.status.code !== 0)
    .map((repo) => `repo${repo.key}: ${repo.status.message}`)
  return {
    type: READY,
    status: "False",
    reason: REASONS[stanza.status.code] ?? "RepositoryError",
    message: clip([stanza.status.message, ...failing].join("; ")),
  }
}

/** Known only once this sidecar archived, or failed to archive, a segment since it started. */
const archivingCondition = (observation: StanzaObservation): ConditionValue | undefined => {
  const { lastArchived: done, lastArchiveFailure: failed } = observation
  if (failed !== undefined && (done === undefined || failed.at.getTime() >= done.at.getTime())) {
    const error = failed.error ?? "unknown error"
    const message = clip(`archiving ${failed.walName} failed at ${rfc3339(failed.at)}: ${error}`)
    return { type: CONTINUOUS_ARCHIVING, status: "False", reason: "ContinuousArchivingFailing", message }
  }
  if (done !== undefined) {
    const message = `${done.walName} archived at ${rfc3339(done.at)}`
    return { type: CONTINUOUS_ARCHIVING, status: "True", reason: "ContinuousArchivingSuccess", message }
  }
  return undefined
}

/**
 * Our conditions, each keeping its `lastTransitionTime` while its status stays the same; a condition
 * that cannot be evaluated now (no archive attempt since a restart) keeps its previous value.
 */
export const mergeConditions = (
  previous: ReadonlyArray<Condition>,
  current: ReadonlyArray<ConditionValue>,
  now: Date,
): ReadonlyArray<Condition> =>
  CONDITION_TYPES.flatMap((type) => {
    const before = previous.find((condition) => condition.type === type)
    const after = current.find((condition) => condition.type === type)
    if (after === undefined) {
      return before === undefined ? [] : [before]
    }
    const since = before?.status === after.status ? before.lastTransitionTime : rfc3339(now)
    return [{ ...after, lastTransitionTime: since }]
  })

/** The repositories' part of the status; a failed `info` leaves what the status held. */
const repositoryFields = (info: InfoOutcome) => {
  if (info._tag === "Failed") {
    return {}
  }
  const { stanza } = info
  const window = recoveryWindow(stanza)
  return {
    recoveryWindow:
      window === undefined
        ? null
        : { firstBackup: backupRef(window.first), lastBackup: backupRef(window.last) },
    firstRecoverabilityPoint: window === undefined ? null : fromUnix(window.first.timestamp.stop),
    backups: backupCounts(stanza),
    repositories: repositoryKeys(stanza).map((key) => repositoryStatus(stanza, key)),
  }
}

/** The status patch for `observation`, given the conditions the Stanza holds now. */
export const stanzaStatus = (
  observation: StanzaObservation,
  previous: ReadonlyArray<Condition>,
  now: Date,
): StanzaStatusBody => {
  const { lastArchived: wal, lastSucceeded: succeeded, lastFailed: failed } = observation
  const current = [readyCondition(observation), archivingCondition(observation)]
  return {
    conditions: mergeConditions(previous, current.filter(Predicate.isNotUndefined), now),
    ...repositoryFields(observation.info),
    ...(wal === undefined ? {} : { lastArchivedWAL: wal.walName, lastArchivedTime: rfc3339(wal.at) }),
    ...(succeeded === undefined
      ? {}
      : {
          lastSuccessfulBackup: {
            name: succeeded.backupName,
            ...(succeeded.label === undefined ? {} : { label: succeeded.label }),
            time: rfc3339(succeeded.at),
          },
        }),
    ...(failed === undefined
      ? {}
      : {
          lastFailedBackup: {
            name: failed.backupName,
            time: rfc3339(failed.at),
            error: clip(failed.error ?? "unknown error"),
          },
        }),
  }
}
