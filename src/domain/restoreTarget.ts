import { Either } from "effect"
import type { RecoveryTarget } from "./cluster.js"
import { FailedPrecondition, InvalidRequest, NotFound } from "./errors.js"
import type { InfoBackup } from "./pgbackrestInfo.js"

/** `16/B374D848` -> a number that orders LSNs. */
const lsnValue = (lsn: string): number | undefined => {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn)
  return match?.[1] === undefined || match[2] === undefined
    ? undefined
    : Number.parseInt(match[1], 16) * 2 ** 32 + Number.parseInt(match[2], 16)
}

/**
 * PostgreSQL's timestamp forms (`2026-11-24 10:00:00+00`, `...+05:30`, RFC 3339) as milliseconds; a
 * time without a zone is taken as UTC, the zone CloudNativePG's instances run in.
 */
export const parseTargetTime = (text: string): number => {
  let iso = text.trim().replace(" ", "T")
  if (/[+-]\d{2}$/.test(iso)) {
    iso = `${iso}:00`
  } else if (/[+-]\d{4}$/.test(iso)) {
    iso = `${iso.slice(0, -2)}:${iso.slice(-2)}`
  } else if (!/(Z|[+-]\d{2}:\d{2})$/i.test(iso)) {
    iso = `${iso}Z`
  }
  return Date.parse(iso)
}

const newestFirst = (backups: ReadonlyArray<InfoBackup>): ReadonlyArray<InfoBackup> =>
  [...backups].filter((backup) => backup.error !== true).sort((a, b) => b.timestamp.stop - a.timestamp.stop)

const FIELD = "spec.bootstrap.recovery.recoveryTarget"

/**
 * The backup set a restore starts from. `backupID` names it; otherwise the newest backup that ends
 * before the target (time or LSN), so that recovery can reach the target by replaying WAL; otherwise
 * (XID, name, immediate, latest) the newest backup. pgBackRest picks the repository that holds it.
 */
export const chooseBackup = (
  backups: ReadonlyArray<InfoBackup>,
  target: RecoveryTarget | undefined,
): Either.Either<InfoBackup, InvalidRequest | NotFound | FailedPrecondition> => {
  const candidates = newestFirst(backups)
  if (candidates.length === 0) {
    return Either.left(
      new FailedPrecondition({ reason: "the recovery source's stanza holds no usable backup" }),
    )
  }
  if (target?.backupID !== undefined && target.backupID !== "") {
    const id = target.backupID
    const chosen = candidates.find((backup) => backup.label === id)
    return chosen === undefined
      ? Either.left(new NotFound({ what: `backup ${id}`, reason: `named by ${FIELD}.backupID` }))
      : Either.right(chosen)
  }
  if (target?.targetTime !== undefined && target.targetTime !== "") {
    const millis = parseTargetTime(target.targetTime)
    if (Number.isNaN(millis)) {
      return Either.left(
        new InvalidRequest({
          field: `${FIELD}.targetTime`,
          reason: `"${target.targetTime}" is not a timestamp`,
        }),
      )
    }
    const chosen = candidates.find((backup) => backup.timestamp.stop * 1000 <= millis)
    return chosen === undefined
      ? Either.left(
          new FailedPrecondition({ reason: `no backup ends before the target time ${target.targetTime}` }),
        )
      : Either.right(chosen)
  }
  if (target?.targetLSN !== undefined && target.targetLSN !== "") {
    const wanted = lsnValue(target.targetLSN)
    if (wanted === undefined) {
      return Either.left(
        new InvalidRequest({ field: `${FIELD}.targetLSN`, reason: `"${target.targetLSN}" is not an LSN` }),
      )
    }
    const chosen = candidates.find((backup) => {
      const stop = backup.lsn === undefined ? undefined : lsnValue(backup.lsn.stop)
      return stop !== undefined && stop <= wanted
    })
    return chosen === undefined
      ? Either.left(
          new FailedPrecondition({ reason: `no backup ends before the target LSN ${target.targetLSN}` }),
        )
      : Either.right(chosen)
  }
  // candidates is not empty here.
  return Either.fromNullable(candidates[0], () => new FailedPrecondition({ reason: "no usable backup" }))
}

/** The restore_command CloudNativePG's instance manager provides, which calls back into the plugin. */
export const CNPG_RESTORE_COMMAND =
  "/controller/manager wal-restore --log-destination /controller/log/postgres.json %f %p"

/**
 * What the plugin adds to the restored instance's configuration. The recovery_target_* settings are
 * the operator's to write; writing them here too would conflict.
 */
export const restoreConfig = (restoreCommand: string = CNPG_RESTORE_COMMAND): string =>
  [`recovery_target_action = promote`, `restore_command = '${restoreCommand.replaceAll("'", "''")}'`].join(
    "\n",
  )
