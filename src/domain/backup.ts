import { Either, Schema } from "effect"
import { decodeWithPath } from "./decode.js"
import { InvalidRequest } from "./errors.js"

/** The parts of a CloudNativePG `Backup` the plugin reads; names are validated as Kubernetes names. */
const KubernetesName = Schema.String.pipe(
  Schema.filter((value) => /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(value), {
    message: () => "must be a Kubernetes object name",
  }),
)

export const BackupResource = Schema.Struct({
  metadata: Schema.Struct({
    name: KubernetesName,
    namespace: Schema.optional(Schema.String),
    uid: Schema.String.pipe(
      Schema.filter((value) => /^[A-Za-z0-9-]{1,64}$/.test(value), {
        message: () => "must be a Kubernetes uid",
      }),
    ),
  }),
  spec: Schema.Struct({
    cluster: Schema.optional(Schema.Struct({ name: Schema.String })),
    method: Schema.optional(Schema.String),
    target: Schema.optional(Schema.String),
  }),
})
export type BackupResource = typeof BackupResource.Type

const decodeResource = decodeWithPath(BackupResource, "backup_definition", { strict: false })

export const decodeBackupDefinition = (bytes: Uint8Array): Either.Either<BackupResource, InvalidRequest> =>
  Either.try({
    try: (): unknown => JSON.parse(new TextDecoder().decode(bytes)),
    catch: () => new InvalidRequest({ field: "backup_definition", reason: "is not valid JSON" }),
  }).pipe(Either.flatMap(decodeResource))
