import { Either, Schema } from "effect"
import { decodeWithPath, parseJsonBytes } from "./decode.js"
import type { InvalidRequest } from "./errors.js"
import { ObjectName } from "./kubernetesName.js"

const Uid = Schema.String.pipe(
  Schema.filter((value) => /^[A-Za-z0-9-]{1,64}$/.test(value), { message: () => "must be a Kubernetes uid" }),
)

const Metadata = Schema.Struct({
  name: ObjectName,
  namespace: Schema.optional(Schema.String),
  uid: Schema.optional(Uid),
})

/**
 * The parts of a CloudNativePG `Backup` the plugin reads, on both sides: the ReconcilerHooks (in
 * `resource_definition`: whether this plugin takes it, and with which parameters) and the instance's
 * Backup RPC (in `backup_definition`). Read leniently: the object has many more fields, and a fork of
 * CloudNativePG may use another API group.
 */
export const BackupResource = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  metadata: Metadata,
  spec: Schema.optionalWith(
    Schema.Struct({
      cluster: Schema.optional(Schema.Struct({ name: Schema.String })),
      method: Schema.optional(Schema.String),
      target: Schema.optional(Schema.String),
      pluginConfiguration: Schema.optional(
        Schema.Struct({
          name: Schema.String,
          parameters: Schema.optional(
            Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String })),
          ),
        }),
      ),
    }),
    { default: () => ({}) },
  ),
  status: Schema.optional(Schema.Struct({ phase: Schema.optional(Schema.String) })),
})
export type BackupResource = typeof BackupResource.Type

/** A Backup the instance takes: its uid is what finds this exact backup in `pgbackrest info` afterwards. */
const BackupToTake = Schema.Struct({
  ...BackupResource.fields,
  metadata: Schema.Struct({ ...Metadata.fields, uid: Uid }),
})
export type BackupToTake = typeof BackupToTake.Type

/** The Backup a ReconcilerHooks call carries in `resource_definition`. */
export const decodeBackupResource: (input: unknown) => Either.Either<BackupResource, InvalidRequest> =
  decodeWithPath(BackupResource, "resource_definition", { strict: false })

const decodeToTake = decodeWithPath(BackupToTake, "backup_definition", { strict: false })

/** The Backup JSON the instance manager puts in `backup_definition`, decoded. */
export const decodeBackupDefinition = (bytes: Uint8Array): Either.Either<BackupToTake, InvalidRequest> =>
  parseJsonBytes(bytes, "backup_definition").pipe(Either.flatMap(decodeToTake))

/** Where the Backup lives in the API: its own apiVersion, as a fork of CloudNativePG may change the group. */
export const backupApiResource = (backup: BackupResource) => {
  const [group = "postgresql.cnpg.io", version = "v1"] = (backup.apiVersion ?? "")
    .split("/")
    .filter((p) => p !== "")
  return { group, version, plural: "backups", kind: "Backup" }
}

/** The status CloudNativePG itself writes for a failed Backup (`BackupStatus.SetAsFailed`). */
export const failedBackupStatus = (error: InvalidRequest) => ({
  phase: "failed",
  error: error.message,
  method: "plugin",
})
