import * as path from "node:path"
import { Either, Schema } from "effect"
import { InvalidRequest } from "./errors.js"

/**
 * Names PostgreSQL gives files in pg_wal that archive_command may be asked to archive: a segment
 * (24 hex digits), a partial segment, a backup history file, or a timeline history file.
 */
const WAL_FILE_NAME = /^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$/

export const WalFileName = Schema.String.pipe(
  Schema.filter((name) => WAL_FILE_NAME.test(name), {
    message: () => "must be a WAL file name such as 000000010000000000000001",
  }),
  Schema.brand("WalFileName"),
)
export type WalFileName = typeof WalFileName.Type

/** A regular 16 MiB segment (not history, backup label or partial file). */
export const isSegment = (name: WalFileName): boolean => /^[0-9A-F]{24}$/.test(name)

/**
 * A value from the request as error messages quote it: bounded, so that a hostile megabyte does not
 * travel back in the gRPC status (a trailer over 64 KiB breaks a Node.js client's connection).
 */
const quote = (value: string): string =>
  JSON.stringify(value.length > 200 ? `${value.slice(0, 200)}...` : value)

export const decodeWalFileName = (field: string, name: string): Either.Either<WalFileName, InvalidRequest> =>
  Schema.decodeEither(WalFileName)(name).pipe(
    Either.mapLeft(
      () =>
        new InvalidRequest({
          field,
          reason: `${quote(name)} is not a WAL file name (expected e.g. 000000010000000000000001)`,
        }),
    ),
  )

/**
 * Checks the file the operator asks us to archive: an absolute, normalised path to a WAL file inside
 * the instance's `pg_wal`. Anything else (a traversal, a file elsewhere on the volume) is refused
 * before pgBackRest ever sees it.
 */
export const archiveSource = (
  field: string,
  file: string,
  pgData: string,
): Either.Either<{ readonly path: string; readonly name: WalFileName }, InvalidRequest> => {
  if (!path.isAbsolute(file) || path.normalize(file) !== file) {
    return Either.left(
      new InvalidRequest({ field, reason: `${quote(file)} must be an absolute, normalised path` }),
    )
  }
  const walDir = path.join(pgData, "pg_wal")
  // path.dirname and path.basename ignore a trailing slash: rebuilding the path refuses one.
  if (path.join(walDir, path.basename(file)) !== file) {
    return Either.left(new InvalidRequest({ field, reason: `${quote(file)} is not in ${walDir}` }))
  }
  return decodeWalFileName(field, path.basename(file)).pipe(Either.map((name) => ({ path: file, name })))
}

/**
 * Names PostgreSQL gives the file restore_command writes: `RECOVERYXLOG`, `RECOVERYHISTORY`, or a WAL
 * file name (pg_rewind). Plain names only: no separator, no control character, not `.` or `..`.
 */
const DESTINATION_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/

/**
 * Checks where WAL.Restore is asked to write: an absolute, normalised path to a plain file name
 * directly in PGDATA's `pg_wal` (PostgreSQL asks for `pg_wal/RECOVERYXLOG` and the like, made absolute
 * by the instance manager). A subdirectory is refused: it could be a symbolic link out of PGDATA, which
 * a check of the string cannot see (the service refuses a link in place of the file itself).
 */
export const restoreDestination = (
  field: string,
  file: string,
  pgData: string,
): Either.Either<string, InvalidRequest> => {
  if (!path.isAbsolute(file) || path.normalize(file) !== file) {
    return Either.left(
      new InvalidRequest({ field, reason: `${quote(file)} must be an absolute, normalised path` }),
    )
  }
  const walDir = path.join(pgData, "pg_wal")
  // path.dirname and path.basename ignore a trailing slash (`pg_wal/archive_status/` would pass as a
  // file named archive_status): rebuilding the path refuses one.
  if (path.join(walDir, path.basename(file)) !== file) {
    return Either.left(
      new InvalidRequest({ field, reason: `${quote(file)} is not a file directly in ${walDir}` }),
    )
  }
  return DESTINATION_NAME.test(path.basename(file))
    ? Either.right(file)
    : Either.left(
        new InvalidRequest({
          field,
          reason: `${quote(file)} must name a file of letters, digits, '.', '_' or '-' (e.g. RECOVERYXLOG)`,
        }),
      )
}
