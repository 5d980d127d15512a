import { Option } from "effect"
import type { InfoBackup, InfoStanza } from "../domain/pgbackrestInfo.js"
import { PLUGIN_NAME, PLUGIN_VERSION } from "../domain/plugin.js"
import type { BackupResult } from "../generated/backup.js"

/**
 * Annotations the plugin puts on every backup it takes (`pgbackrest backup --annotation=...`), so that
 * the result names exactly that backup, found by the Backup resource's uid, never "the latest one".
 */
export const ANNOTATION_BACKUP_NAME = "cnpg-backup-name"
export const ANNOTATION_BACKUP_UID = "cnpg-backup-uid"
export const ANNOTATION_CLUSTER = "cnpg-cluster"

/** The backup of `repository` carrying the Backup resource's uid, if pgBackRest lists it. */
export const findBackupByUid = (
  stanzas: ReadonlyArray<InfoStanza>,
  stanzaName: string,
  repository: number,
  uid: string,
): Option.Option<InfoBackup> =>
  Option.fromNullable(
    stanzas
      .find((stanza) => stanza.name === stanzaName)
      ?.backup.find(
        (backup) =>
          backup.database["repo-key"] === repository && backup.annotation?.[ANNOTATION_BACKUP_UID] === uid,
      ),
  )

export interface ResultContext {
  readonly stanza: string
  readonly repository: number
  readonly instanceId: string
  readonly clusterUid: string
}

/** What the operator copies into the Backup's status: every field set (0 timestamps would show as 1970). */
export const backupResultOf = (backup: InfoBackup, context: ResultContext): BackupResult => ({
  backupId: backup.label,
  backupName: backup.label,
  startedAt: backup.timestamp.start,
  stoppedAt: backup.timestamp.stop,
  beginWal: backup.archive.start ?? "",
  endWal: backup.archive.stop ?? "",
  beginLsn: backup.lsn?.start ?? "",
  endLsn: backup.lsn?.stop ?? "",
  // pgBackRest keeps backup_label inside the backup itself; the operator does not need a copy.
  backupLabelFile: Buffer.alloc(0),
  tablespaceMapFile: Buffer.alloc(0),
  instanceId: context.instanceId,
  online: true,
  metadata: {
    plugin: PLUGIN_NAME,
    pluginVersion: PLUGIN_VERSION,
    stanza: context.stanza,
    repository: String(context.repository),
    type: backup.type,
    ...(backup.prior === null ? {} : { prior: backup.prior }),
    clusterUid: context.clusterUid,
  },
})
