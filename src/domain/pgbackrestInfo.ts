import { Effect, Schema } from "effect"
import { Unavailable } from "./errors.js"

/**
 * The parts of `pgbackrest info --output=json` the plugin reads. Decoded leniently (pgBackRest adds
 * fields between versions); `system-id` does not fit a double and arrives as a string.
 */
/** pgBackRest's backup types: full, differential (since the last full), incremental (since the last backup). */
export const BACKUP_TYPES = ["full", "diff", "incr"] as const
export type BackupType = (typeof BACKUP_TYPES)[number]

const Status = Schema.Struct({ code: Schema.Number, message: Schema.String })

export const InfoArchive = Schema.Struct({
  database: Schema.Struct({ id: Schema.Number, "repo-key": Schema.Number }),
  id: Schema.String,
  min: Schema.NullOr(Schema.String),
  max: Schema.NullOr(Schema.String),
})

export const InfoBackup = Schema.Struct({
  label: Schema.String,
  type: Schema.Literal(...BACKUP_TYPES),
  prior: Schema.NullOr(Schema.String),
  timestamp: Schema.Struct({ start: Schema.Number, stop: Schema.Number }),
  archive: Schema.Struct({ start: Schema.NullOr(Schema.String), stop: Schema.NullOr(Schema.String) }),
  lsn: Schema.optional(Schema.Struct({ start: Schema.String, stop: Schema.String })),
  database: Schema.Struct({ id: Schema.Number, "repo-key": Schema.Number }),
  annotation: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  error: Schema.optional(Schema.Boolean),
})
export type InfoBackup = typeof InfoBackup.Type

export const InfoStanza = Schema.Struct({
  name: Schema.String,
  status: Status,
  archive: Schema.Array(InfoArchive),
  backup: Schema.Array(InfoBackup),
  repo: Schema.optional(Schema.Array(Schema.Struct({ key: Schema.Number, status: Status }))),
})
export type InfoStanza = typeof InfoStanza.Type

export const PgBackRestInfo = Schema.Array(InfoStanza)
export type PgBackRestInfo = typeof PgBackRestInfo.Type

/** Checks parsed `info` JSON: a listing the plugin cannot read is UNAVAILABLE, not a crash. */
export const decodeInfo = (json: unknown): Effect.Effect<PgBackRestInfo, Unavailable> =>
  Schema.decodeUnknown(PgBackRestInfo)(json).pipe(
    Effect.mapError((error) => new Unavailable({ what: "pgbackrest info", reason: error.message })),
  )

/**
 * The newest WAL file `repository` holds for the database of `backup` in `stanza`, or nothing: what
 * tells whether the WAL a backup needs to be consistent has reached that repository.
 */
export const archivedThrough = (info: PgBackRestInfo, stanza: string, backup: InfoBackup): string | null =>
  info
    .find((entry) => entry.name === stanza)
    ?.archive.find(
      (archive) =>
        archive.database["repo-key"] === backup.database["repo-key"] &&
        archive.database.id === backup.database.id,
    )?.max ?? null

/**
 * Repositories in which the stanza already holds WAL or backups. An empty list means a new cluster
 * may start archiving there without mixing its WAL with another cluster's.
 */
export const nonEmptyRepositories = (stanza: InfoStanza): ReadonlyArray<number> => {
  const keys = new Set<number>()
  for (const archive of stanza.archive) {
    if (archive.min !== null || archive.max !== null) {
      keys.add(archive.database["repo-key"])
    }
  }
  for (const backup of stanza.backup) {
    keys.add(backup.database["repo-key"])
  }
  return [...keys].sort((a, b) => a - b)
}
