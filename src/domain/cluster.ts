import { Effect, Either, Option, Schema } from "effect"
import { decodeWithPath, parseJsonBytes } from "./decode.js"
import { InvalidRequest } from "./errors.js"
import { isObjectName, NamespaceName, OBJECT_NAME_RULE, ObjectName } from "./kubernetesName.js"
import { PLUGIN_NAME } from "./plugin.js"

/**
 * The parts of a CloudNativePG `Cluster` the plugin reads, decoded leniently: the operator sends the
 * object as JSON, possibly without apiVersion/kind, possibly from a fork with another API group, and
 * with far more fields than we care about.
 */
const Parameters = Schema.Record({ key: Schema.String, value: Schema.String })

export const PluginEntry = Schema.Struct({
  name: Schema.String,
  enabled: Schema.optional(Schema.Boolean),
  isWALArchiver: Schema.optional(Schema.Boolean),
  parameters: Schema.optional(Parameters),
})

export const ExternalCluster = Schema.Struct({
  name: Schema.String,
  plugin: Schema.optional(Schema.Struct({ name: Schema.String, parameters: Schema.optional(Parameters) })),
})

/** `bootstrap.recovery.recoveryTarget`: which backup to start from and where recovery stops. */
export const RecoveryTarget = Schema.Struct({
  backupID: Schema.optional(Schema.String),
  targetTime: Schema.optional(Schema.String),
  targetLSN: Schema.optional(Schema.String),
  targetXID: Schema.optional(Schema.String),
  targetName: Schema.optional(Schema.String),
  targetTLI: Schema.optional(Schema.String),
  targetImmediate: Schema.optional(Schema.Boolean),
  exclusive: Schema.optional(Schema.Boolean),
})
export type RecoveryTarget = typeof RecoveryTarget.Type

export const Cluster = Schema.Struct({
  metadata: Schema.Struct({
    name: ObjectName,
    namespace: Schema.optional(NamespaceName),
    uid: Schema.optional(Schema.String),
    annotations: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  }),
  spec: Schema.optionalWith(
    Schema.Struct({
      plugins: Schema.optional(Schema.Array(PluginEntry)),
      /** CloudNativePG 1.29+: the pods and Jobs run as this account instead of one named after the Cluster. */
      serviceAccountName: Schema.optional(ObjectName),
      externalClusters: Schema.optional(Schema.Array(ExternalCluster)),
      bootstrap: Schema.optional(
        Schema.Struct({
          recovery: Schema.optional(
            Schema.Struct({
              source: Schema.optional(Schema.String),
              recoveryTarget: Schema.optional(RecoveryTarget),
            }),
          ),
        }),
      ),
      walStorage: Schema.optional(Schema.Unknown),
      replica: Schema.optional(
        Schema.Struct({ enabled: Schema.optional(Schema.Boolean), source: Schema.optional(Schema.String) }),
      ),
    }),
    { default: () => ({}) },
  ),
  /** What CloudNativePG stored from each plugin's SetStatusInCluster answer (a JSON text). */
  status: Schema.optional(
    Schema.Struct({
      pluginStatus: Schema.optional(
        Schema.Array(Schema.Struct({ name: Schema.String, status: Schema.optional(Schema.String) })),
      ),
    }),
  ),
})
export type Cluster = typeof Cluster.Type

export const decodeCluster: (input: unknown) => Either.Either<Cluster, InvalidRequest> = decodeWithPath(
  Cluster,
  "cluster",
  { strict: false },
)

/** The Cluster JSON the operator puts in `cluster_definition`, decoded. */
export const decodeClusterDefinition = (bytes: Uint8Array): Either.Either<Cluster, InvalidRequest> =>
  parseJsonBytes(bytes, "cluster_definition").pipe(Either.flatMap(decodeCluster))

/**
 * The Cluster's namespace. CloudNativePG always sends it; a Cluster decoded leniently without one is
 * taken to live in `fallback`: the sidecar's own namespace (its pod is the Cluster's), or Kubernetes'
 * `default` on the operator side.
 */
export const clusterNamespace = (cluster: Cluster, fallback = "default"): string =>
  cluster.metadata.namespace ?? fallback

/** The file CloudNativePG leaves in PGDATA after initdb, a restore or a pg_basebackup, until archiving works. */
export const CHECK_EMPTY_WAL_ARCHIVE_FILE = ".check-empty-wal-archive"

/** `cnpg.io/skipEmptyWalArchiveCheck: enabled` on the Cluster turns the empty-archive check off. */
export const SKIP_EMPTY_WAL_ARCHIVE_CHECK = "cnpg.io/skipEmptyWalArchiveCheck"

/**
 * Whether the first WAL.Archive must find the archive empty. CloudNativePG after 1.30 decides it and
 * sends `check_empty_wal_archive`; released 1.27 to 1.30 never send it, and leave the decision to the
 * plugin as theirs was made in-tree: the Cluster annotation does not skip it, and the marker file is
 * in PGDATA (`archiver.go`, `shouldCheckEmptyWalArchive`). `markerExists` is asked only when needed.
 */
export const mustCheckEmptyArchive = <E, R>(
  sent: boolean | undefined,
  cluster: Cluster,
  markerExists: Effect.Effect<boolean, E, R>,
): Effect.Effect<boolean, E, R> =>
  sent !== undefined
    ? Effect.succeed(sent)
    : cluster.metadata.annotations?.[SKIP_EMPTY_WAL_ARCHIVE_CHECK] === "enabled"
      ? Effect.succeed(false)
      : markerExists

/** This plugin's entry in `spec.plugins`, if the Cluster enables it. */
export const ownPluginEntry = (cluster: Cluster): Option.Option<typeof PluginEntry.Type> =>
  Option.fromNullable(
    cluster.spec.plugins?.find((entry) => entry.name === PLUGIN_NAME && entry.enabled !== false),
  )

/**
 * The Stanza the Cluster archives to: `spec.plugins[name=pgbackrest.dalibo.com].parameters.stanzaRef`.
 * A Cluster that sends us WAL without naming a Stanza is misconfigured: the error names the field.
 */
export const archiveStanzaRef = (cluster: Cluster): Either.Either<string, InvalidRequest> => {
  const index =
    cluster.spec.plugins?.findIndex((entry) => entry.name === PLUGIN_NAME && entry.enabled !== false) ?? -1
  const field = index < 0 ? "spec.plugins" : `spec.plugins[${index}].parameters.stanzaRef`
  return ownPluginEntry(cluster).pipe(
    Option.flatMap((entry) => Option.fromNullable(entry.parameters?.stanzaRef)),
    Option.filter((ref) => ref !== ""),
    Either.fromOption(
      () =>
        new InvalidRequest({
          field,
          reason:
            index < 0
              ? `cluster ${cluster.metadata.name} does not enable the ${PLUGIN_NAME} plugin`
              : "the name of a Stanza is required",
        }),
    ),
    Either.flatMap((ref) => stanzaName(ref, field)),
  )
}

/** A `stanzaRef` goes into the API path of the Stanza read: only an object name may. */
const stanzaName = (ref: string, field: string): Either.Either<string, InvalidRequest> =>
  isObjectName(ref) ? Either.right(ref) : Either.left(new InvalidRequest({ field, reason: OBJECT_NAME_RULE }))

/** The Stanza of `externalClusters[name=source]` when that entry uses this plugin. */
const externalStanzaRef = (
  cluster: Cluster,
  source: string,
  sourceField: string,
): Either.Either<string, InvalidRequest> => {
  const index = cluster.spec.externalClusters?.findIndex((external) => external.name === source) ?? -1
  const external = index < 0 ? undefined : cluster.spec.externalClusters?.[index]
  if (external === undefined) {
    return Either.left(
      new InvalidRequest({ field: sourceField, reason: `no externalClusters entry is named "${source}"` }),
    )
  }
  if (external.plugin?.name !== PLUGIN_NAME) {
    return Either.left(
      new InvalidRequest({
        field: `spec.externalClusters[${index}].plugin.name`,
        reason: `must be ${PLUGIN_NAME}`,
      }),
    )
  }
  const ref = external.plugin.parameters?.stanzaRef
  const field = `spec.externalClusters[${index}].plugin.parameters.stanzaRef`
  return ref === undefined || ref === ""
    ? Either.left(new InvalidRequest({ field, reason: "the name of a Stanza is required" }))
    : stanzaName(ref, field)
}

/** The Stanza a Cluster bootstraps from: its `bootstrap.recovery.source` external cluster's. */
export const recoveryStanzaRef = (cluster: Cluster): Either.Either<string, InvalidRequest> => {
  const source = cluster.spec.bootstrap?.recovery?.source
  return source === undefined || source === ""
    ? Either.left(
        new InvalidRequest({ field: "spec.bootstrap.recovery.source", reason: "is required to restore" }),
      )
    : externalStanzaRef(cluster, source, "spec.bootstrap.recovery.source")
}

/** A replica cluster follows its `replica.source`: WAL comes from that external cluster's Stanza. */
export const replicaStanzaRef = (cluster: Cluster): Option.Option<Either.Either<string, InvalidRequest>> => {
  const replica = cluster.spec.replica
  return replica?.enabled === true && replica.source !== undefined && replica.source !== ""
    ? Option.some(externalStanzaRef(cluster, replica.source, "spec.replica.source"))
    : Option.none()
}

/**
 * Which Stanza WAL.Restore reads from. The restore Job's sidecar replays the recovery source; an
 * instance of a replica cluster follows its replica source; any other instance reads its own.
 */
export const walRestoreStanzaRef = (
  cluster: Cluster,
  role: "instance" | "restore",
): Either.Either<string, InvalidRequest> =>
  role === "restore"
    ? recoveryStanzaRef(cluster)
    : Option.getOrElse(replicaStanzaRef(cluster), () => archiveStanzaRef(cluster))
