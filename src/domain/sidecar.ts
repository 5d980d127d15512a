import { Either, Option, Schema } from "effect"
import { type Cluster, decodeCluster, ownPluginEntry } from "./cluster.js"
import { decodeWithPath } from "./decode.js"
import { InvalidRequest } from "./errors.js"
import { appendTo, type JsonPatchOperation } from "./jsonPatch.js"
import type { LogLevelName } from "./logLine.js"
import { PLUGIN_NAME } from "./plugin.js"

/** The injected container's name, in instance Pods and in the full-recovery Job's pod template. */
export const SIDECAR_NAME = "pgbackrest-plugin"
/** The emptyDir the instance manager scans for sockets; other plugins' sidecars share it by this name. */
export const PLUGINS_VOLUME = "plugins"
export const PLUGINS_PATH = "/plugins"
const PLUGINS_MOUNT = { name: PLUGINS_VOLUME, mountPath: PLUGINS_PATH } as const
/** Where CloudNativePG mounts the instance's PVC (PGDATA is its `pgdata/` subdirectory). */
export const PGDATA_VOLUME_PATH = "/var/lib/postgresql/data"
/** Where CloudNativePG mounts the WAL PVC when the Cluster has `spec.walStorage`. */
export const WAL_VOLUME_PATH = "/var/lib/postgresql/wal"
/** On the `scratch-data` emptyDir CloudNativePG mounts at /controller: locks and CA bundles may vanish. */
export const RUN_DIR = "/controller/tmp/pgbackrest-plugin"
const MAIN_SCRIPT = "/opt/cnpg-pgbackrest/main.js"
/**
 * The Jobs that recover a Cluster from its recovery source, named after `cnpg.io/jobRole`, whose main
 * container has the same name: `full-recovery` (RestoreJobHooks fills PGDATA, then WAL.Restore replays)
 * and `snapshot-recovery` (PGDATA comes from a volume snapshot; WAL.Restore alone brings it forward).
 */
const RECOVERY_JOB_ROLES: ReadonlyArray<string> = ["full-recovery", "snapshot-recovery"]

/** What the operator-side plugin knows about the sidecar it injects. */
export interface SidecarSettingsShape {
  /** The plugin's image: the same program serves the `instance` and `restore` roles. */
  readonly image: string
  readonly logLevel: LogLevelName
}

// Lenient views of the Pod and Job: only the fields we read. Env vars and mounts keep every other key
// (subPath, valueFrom, ...) because the sidecar gets verbatim copies of them.
const Open = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const Named = Schema.Struct({ name: Schema.String }, Open)
const Mount = Schema.Struct({ name: Schema.String, mountPath: Schema.String }, Open)
// Go omits empty slices, and other clients may send null: both mean "none yet".
const list = <S extends Schema.Schema.Any>(item: S) =>
  Schema.optionalWith(Schema.Array(item), { nullable: true })
const Container = Schema.Struct({
  name: Schema.String,
  env: list(Named),
  envFrom: list(Open),
  volumeMounts: list(Mount),
})
type Container = typeof Container.Type
const PodSpec = Schema.Struct({
  containers: Schema.Array(Container),
  initContainers: list(Named),
  volumes: list(Named),
})
type PodSpec = typeof PodSpec.Type
const Metadata = Schema.optional(
  Schema.Struct({ labels: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })) }),
)
const TypeMeta = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
})
const Pod = Schema.Struct({ spec: PodSpec })
const Job = Schema.Struct({
  metadata: Metadata,
  spec: Schema.Struct({ template: Schema.Struct({ metadata: Metadata, spec: PodSpec }) }),
})
/** The Cluster fields that shape the sidecar, beyond those `cluster.ts` reads. */
const ClusterPodFields = Schema.Struct({
  spec: Schema.optionalWith(
    Schema.Struct({
      imagePullPolicy: Schema.optional(Schema.String),
      walStorage: Schema.optional(Schema.Unknown),
    }),
    { default: () => ({}) },
  ),
})

const lenient = { strict: false } as const
const decodeTypeMeta = decodeWithPath(TypeMeta, "object", lenient)
const decodePod = decodeWithPath(Pod, "pod", lenient)
const decodeJob = decodeWithPath(Job, "job", lenient)
const decodeClusterPodFields = decodeWithPath(ClusterPodFields, "cluster", lenient)

const sourceUsesPlugin = (cluster: Cluster, source: string | undefined): boolean =>
  source !== undefined &&
  (cluster.spec.externalClusters ?? []).some(
    (external) => external.name === source && external.plugin?.name === PLUGIN_NAME,
  )

/** The full-recovery Job restores from a Stanza: `bootstrap.recovery.source` names an external cluster of ours. */
export const recoveryUsesPlugin = (cluster: Cluster): boolean =>
  sourceUsesPlugin(cluster, cluster.spec.bootstrap?.recovery?.source)

/**
 * Instances need the sidecar when the Cluster enables the plugin (archiving, backups; without a
 * stanzaRef the sidecar still runs, so WAL.Archive can name the missing field), bootstraps from a
 * Stanza, or replicates from one (`spec.replica.source`).
 */
export const instancesUsePlugin = (cluster: Cluster): boolean =>
  Option.isSome(ownPluginEntry(cluster)) ||
  recoveryUsesPlugin(cluster) ||
  sourceUsesPlugin(cluster, cluster.spec.replica?.source)

const isPluginsMount = (mount: typeof Mount.Type): boolean =>
  mount.name === PLUGINS_VOLUME || mount.mountPath === PLUGINS_PATH

const STARTUP_PROBE = {
  exec: { command: ["node", MAIN_SCRIPT, "healthcheck"] },
  periodSeconds: 1,
  timeoutSeconds: 5,
  failureThreshold: 30,
} as const

const SECURITY_CONTEXT = {
  allowPrivilegeEscalation: false,
  capabilities: { drop: ["ALL"] },
  privileged: false,
  readOnlyRootFilesystem: true,
  runAsNonRoot: true,
  seccompProfile: { type: "RuntimeDefault" },
} as const

/**
 * The plugin's own directories. The spool of async archiving holds WAL that PostgreSQL believes
 * archived, so it lives on a PVC, never on an emptyDir (an earlier plugin lost WAL that way): the WAL
 * volume when the Cluster has one, else the data volume, beside (not inside) PGDATA.
 */
export const pluginDirectories = (
  walStorage: boolean,
  mounts: ReadonlyArray<{ readonly mountPath: string }>,
): ReadonlyArray<{ readonly name: string; readonly value: string }> => {
  const base =
    walStorage && mounts.some((mount) => mount.mountPath === WAL_VOLUME_PATH)
      ? WAL_VOLUME_PATH
      : PGDATA_VOLUME_PATH
  return [
    { name: "CNPG_PGBACKREST_SPOOL_PATH", value: `${base}/pgbackrest-spool` },
    { name: "CNPG_PGBACKREST_STATE_DIR", value: `${base}/pgbackrest-plugin` },
    { name: "CNPG_PGBACKREST_RUN_DIR", value: RUN_DIR },
  ]
}

interface Placement {
  readonly role: "instance" | "restore"
  /** JSON Pointer tokens of the pod spec inside the object. */
  readonly specPath: ReadonlyArray<string>
  readonly spec: PodSpec
  /** The container whose env and mounts the sidecar copies, and which gets `/plugins`. */
  readonly main: string
}

/** The native sidecar: an init container that keeps running, started (probe passed) before `main`. */
const sidecarContainer = (
  main: Container,
  role: Placement["role"],
  settings: SidecarSettingsShape,
  cluster: typeof ClusterPodFields.Type,
) => {
  const mounts = (main.volumeMounts ?? []).filter((mount) => !isPluginsMount(mount))
  const env = main.env ?? []
  // A value the user set in `Cluster.spec.env` (copied from the main container) wins over ours.
  const own = pluginDirectories(cluster.spec.walStorage != null, mounts).filter(
    (variable) => !env.some((existing) => existing.name === variable.name),
  )
  const pullPolicy = cluster.spec.imagePullPolicy
  return {
    name: SIDECAR_NAME,
    image: settings.image,
    args: [role, "--log-level", settings.logLevel],
    ...(main.envFrom === undefined ? {} : { envFrom: main.envFrom }),
    env: [...env, ...own],
    restartPolicy: "Always",
    volumeMounts: [...mounts, PLUGINS_MOUNT],
    startupProbe: STARTUP_PROBE,
    ...(pullPolicy === undefined || pullPolicy === "" ? {} : { imagePullPolicy: pullPolicy }),
    securityContext: SECURITY_CONTEXT,
  }
}

/** Adds only what is missing, so the patched object yields an empty patch. */
const injection = (
  placement: Placement,
  settings: SidecarSettingsShape,
  cluster: typeof ClusterPodFields.Type,
): Either.Either<ReadonlyArray<JsonPatchOperation>, InvalidRequest> => {
  const { spec, specPath } = placement
  const mainIndex = spec.containers.findIndex((container) => container.name === placement.main)
  const main = spec.containers[mainIndex]
  if (main === undefined) {
    return Either.right([])
  }
  const operations: Array<JsonPatchOperation> = []
  if (!(spec.volumes ?? []).some((volume) => volume.name === PLUGINS_VOLUME)) {
    operations.push(appendTo([...specPath, "volumes"], spec.volumes, { name: PLUGINS_VOLUME, emptyDir: {} }))
  }
  if (!(main.volumeMounts ?? []).some(isPluginsMount)) {
    const mountsPath = [...specPath, "containers", mainIndex, "volumeMounts"]
    operations.push(appendTo(mountsPath, main.volumeMounts, PLUGINS_MOUNT))
  }
  const present = [...(spec.initContainers ?? []), ...spec.containers].some(
    (container) => container.name === SIDECAR_NAME,
  )
  if (!present) {
    if (settings.image.trim() === "") {
      return Either.left(
        new InvalidRequest({
          field: "SIDECAR_IMAGE",
          reason: `no image configured for the ${SIDECAR_NAME} sidecar; set SIDECAR_IMAGE on the plugin's Deployment`,
        }),
      )
    }
    const sidecar = sidecarContainer(main, placement.role, settings, cluster)
    operations.push(appendTo([...specPath, "initContainers"], spec.initContainers, sidecar))
  }
  return Either.right(operations)
}

// CloudNativePG labels the Job `cnpg.io/jobRole`; a fork may use another prefix, so match the suffix.
const jobRole = (labels: Readonly<Record<string, string>> | undefined): string | undefined =>
  Object.entries(labels ?? {}).find(([key]) => key.endsWith("/jobRole"))?.[1]

const groupMatches = (apiVersion: string | undefined, group: string): boolean =>
  apiVersion === undefined || (apiVersion.includes("/") ? apiVersion.split("/")[0] === group : group === "")

/**
 * The JSON Patch that injects the pgBackRest sidecar into `object`, as CloudNativePG's
 * OperatorLifecycle hook wants it: an instance Pod of a Cluster that uses the plugin gets the
 * `instance` role, the `<cluster>-1-full-recovery` Job of a Cluster restored from a Stanza gets the
 * `restore` role. Anything else gets no operation. Pure and idempotent: Pod EVALUATE and CREATE hit
 * the same Pod, and the patched object yields an empty patch.
 */
export const sidecarPatch = (
  clusterDefinition: unknown,
  object: unknown,
  settings: SidecarSettingsShape,
): Either.Either<ReadonlyArray<JsonPatchOperation>, InvalidRequest> =>
  Either.gen(function* () {
    const cluster = yield* decodeCluster(clusterDefinition)
    const podFields = yield* decodeClusterPodFields(clusterDefinition)
    const { apiVersion, kind } = yield* decodeTypeMeta(object)
    if (kind === "Pod" && groupMatches(apiVersion, "") && instancesUsePlugin(cluster)) {
      const pod = yield* decodePod(object)
      const placement = { role: "instance", specPath: ["spec"], spec: pod.spec, main: "postgres" } as const
      return yield* injection(placement, settings, podFields)
    }
    if (kind === "Job" && groupMatches(apiVersion, "batch") && recoveryUsesPlugin(cluster)) {
      const job = yield* decodeJob(object)
      const role = jobRole(job.spec.template.metadata?.labels) ?? jobRole(job.metadata?.labels)
      if (role === undefined || !RECOVERY_JOB_ROLES.includes(role)) {
        return []
      }
      const spec = job.spec.template.spec
      const placement = { role: "restore", specPath: ["spec", "template", "spec"], spec, main: role } as const
      return yield* injection(placement, settings, podFields)
    }
    return []
  })
