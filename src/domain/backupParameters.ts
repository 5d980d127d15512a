import { Either, ParseResult, Schema } from "effect"
import { decodeWithPath } from "./decode.js"
import type { InvalidRequest } from "./errors.js"
import { BACKUP_TYPES, type BackupType } from "./pgbackrestInfo.js"

/**
 * The parameters of a plugin Backup (`Backup.spec.pluginConfiguration.parameters`, also what the
 * operator passes to `Backup.Backup`), decoded against the repositories of the Cluster's Stanza.
 * Shared by the operator-side Pre hook (early check) and the instance-side Backup service.
 */

export interface BackupParameters {
  /** pgBackRest's repository number, from 1 (S3 repositories first, then posix ones); default 1. */
  readonly selectedRepository: number
  /**
   * Default `full`: a Backup without parameters (a ScheduledBackup from the documentation) is then
   * self-contained, and count-based retention (`full: 7`) keeps expiring old sets. pgBackRest's own
   * default, incr, would grow one chain forever under such a schedule.
   */
  readonly backupType: BackupType
}

const rangeText = (count: number): string => (count <= 1 ? "must be 1" : `must be between 1 and ${count}`)

/** A 1-based repository number, as the decimal string Kubernetes parameters carry ("0", "01", "x" refused). */
const RepositoryNumber = (count: number) =>
  Schema.transformOrFail(Schema.String, Schema.Number, {
    strict: true,
    decode: (text, _, ast) => {
      const number = /^[1-9][0-9]{0,5}$/.test(text) ? Number(text) : Number.NaN
      return number >= 1 && number <= count
        ? ParseResult.succeed(number)
        : ParseResult.fail(
            new ParseResult.Type(ast, text, `${rangeText(count)}, got ${JSON.stringify(text)}`),
          )
    },
    encode: (number) => ParseResult.succeed(String(number)),
  })

const isBackupType = (value: string): value is BackupType =>
  (BACKUP_TYPES as ReadonlyArray<string>).includes(value)

// A filter rather than a union of literals: one message naming every valid value.
const Type = Schema.String.pipe(
  Schema.filter(isBackupType, {
    message: (issue) => `must be one of ${BACKUP_TYPES.join(", ")}, got ${JSON.stringify(issue.actual)}`,
  }),
)

const parametersSchema = (count: number) =>
  Schema.Struct({
    selectedRepository: Schema.optional(RepositoryNumber(count)),
    backupType: Schema.optional(Type),
  })

/**
 * Decodes Backup parameters for a Stanza with `repositoryCount` repositories. Unknown parameters are
 * refused (a misspelt `backuptype` must not silently take the default). Errors name the parameter
 * under `prefix` and the valid values, e.g.
 * `parameters.selectedRepository: must be between 1 and 2, got "0"`.
 */
export const decodeBackupParameters = (
  parameters: Readonly<Record<string, string>>,
  repositoryCount: number,
  prefix = "parameters",
): Either.Either<BackupParameters, InvalidRequest> =>
  decodeWithPath(parametersSchema(repositoryCount), prefix, { strict: true })(parameters).pipe(
    Either.map((decoded) => ({
      selectedRepository: decoded.selectedRepository ?? 1,
      backupType: decoded.backupType ?? "full",
    })),
  )
