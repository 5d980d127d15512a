import { Effect, type Scope } from "effect"
import { type Channel, ClientError, createChannel, createClient, Status } from "nice-grpc"
import { CallFailed } from "../domain/errors.js"
import { BackupCapability_RPC_Type, BackupDefinition } from "../generated/backup.js"
import { IdentityDefinition, PluginCapability_Service_Type } from "../generated/identity.js"
import { MetricsCapability_RPC_Type, MetricsDefinition } from "../generated/metrics.js"
import { OperatorCapability_RPC_Type, OperatorDefinition } from "../generated/operator.js"
import {
  type OperatorLifecycleCapabilities,
  OperatorLifecycleDefinition,
} from "../generated/operator_lifecycle.js"
import { PostgresCapability_RPC_Type, PostgresDefinition } from "../generated/postgres.js"
import { type ReconcilerHooksCapability_Kind, ReconcilerHooksDefinition } from "../generated/reconciler.js"
import { RestoreJobHooksCapability_Kind, RestoreJobHooksDefinition } from "../generated/restore_job.js"
import { WALCapability_RPC_Type, WALDefinition } from "../generated/wal.js"

/**
 * A port of CloudNativePG's plugin connection (`internal/cnpi/plugin/connection/connection.go`, read
 * at a95a534, v1.30.0-86): what the operator and the instance manager learn of a plugin on every new
 * connection before they call it, and nothing else. Calls are gated on what is learnt here.
 */
export interface LoadedPlugin {
  /** GetPluginMetadata's name: what `spec.plugins[].name` must equal. */
  readonly name: string
  readonly version: string
  readonly address: string
  readonly channel: Channel
  /** How long each call may take: CloudNativePG sets 30 s over TCP, nothing on a unix socket. */
  readonly callTimeoutMs: number | undefined
  readonly services: ReadonlyArray<PluginCapability_Service_Type>
  readonly operatorRpcs: ReadonlyArray<OperatorCapability_RPC_Type>
  readonly lifecycle: ReadonlyArray<OperatorLifecycleCapabilities>
  readonly walRpcs: ReadonlyArray<WALCapability_RPC_Type>
  readonly backupRpcs: ReadonlyArray<BackupCapability_RPC_Type>
  readonly reconcilerKinds: ReadonlyArray<ReconcilerHooksCapability_Kind>
  readonly restoreJobKinds: ReadonlyArray<RestoreJobHooksCapability_Kind>
  readonly postgresRpcs: ReadonlyArray<PostgresCapability_RPC_Type>
  readonly metricsRpcs: ReadonlyArray<MetricsCapability_RPC_Type>
}

/** Runs one client call as an Effect: interruption aborts it, a refusal keeps its gRPC code. */
export const callPlugin = <A>(
  plugin: Pick<LoadedPlugin, "address" | "callTimeoutMs">,
  rpc: string,
  send: (signal: AbortSignal) => Promise<A>,
): Effect.Effect<A, CallFailed> =>
  Effect.tryPromise({
    try: (signal) =>
      send(
        plugin.callTimeoutMs === undefined
          ? signal
          : AbortSignal.any([signal, AbortSignal.timeout(plugin.callTimeoutMs)]),
      ),
    catch: (error) =>
      error instanceof ClientError
        ? new CallFailed({ address: plugin.address, rpc, code: error.code, reason: error.details })
        : new CallFailed({
            address: plugin.address,
            rpc,
            code:
              error instanceof Error && error.name === "TimeoutError"
                ? Status.DEADLINE_EXCEEDED
                : Status.UNKNOWN,
            reason: error instanceof Error ? error.message : String(error),
          }),
  })

/** A channel to `target` (`unix:///path` or `host:port`), closed with the scope. */
export const openChannel = (
  target: string,
  ...rest: Parameters<typeof createChannel> extends [string, ...infer R] ? R : never
): Effect.Effect<Channel, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => createChannel(target, ...rest)),
    (channel) => Effect.sync(() => channel.close()),
  )

const has = <T>(list: ReadonlyArray<T>, value: T): boolean => list.includes(value)

/**
 * `LoadPlugin`: GetPluginMetadata, GetPluginCapabilities, then GetCapabilities of each advertised
 * service in CloudNativePG's order (Operator, OperatorLifecycle, WAL, Backup, ReconcilerHooks,
 * RestoreJobHooks, Postgres, Metrics), all on one connection. Any failure fails the whole load: a
 * plugin that advertises a service it cannot describe is not used at all.
 */
export const loadPlugin = (
  channel: Channel,
  address: string,
  callTimeoutMs?: number,
): Effect.Effect<LoadedPlugin, CallFailed> =>
  Effect.gen(function* () {
    const target = { address, callTimeoutMs }
    const identity = createClient(IdentityDefinition, channel)
    const metadata = yield* callPlugin(target, "cnpgi.identity.v1.Identity/GetPluginMetadata", (signal) =>
      identity.getPluginMetadata({}, { signal }),
    )
    const advertised = yield* callPlugin(
      target,
      "cnpgi.identity.v1.Identity/GetPluginCapabilities",
      (signal) => identity.getPluginCapabilities({}, { signal }),
    )
    // CloudNativePG reads `capability.GetService().Type`: a capability without a service is type 0.
    const services = advertised.capabilities.map((capability) =>
      capability.type?.$case === "service"
        ? capability.type.value.type
        : PluginCapability_Service_Type.TYPE_UNSPECIFIED,
    )
    const when = <A>(
      type: PluginCapability_Service_Type,
      load: Effect.Effect<ReadonlyArray<A>, CallFailed>,
    ) => (has(services, type) ? load : Effect.succeed<ReadonlyArray<A>>([]))
    const rpcTypes = <T>(
      capabilities: ReadonlyArray<{ readonly type?: { readonly value: { readonly type: T } } | undefined }>,
      unspecified: T,
    ): ReadonlyArray<T> => capabilities.map((capability) => capability.type?.value.type ?? unspecified)

    const operatorRpcs = yield* when(
      PluginCapability_Service_Type.TYPE_OPERATOR_SERVICE,
      Effect.map(
        callPlugin(target, "cnpgi.operator.v1.Operator/GetCapabilities", (signal) =>
          createClient(OperatorDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => rpcTypes(result.capabilities, OperatorCapability_RPC_Type.TYPE_UNSPECIFIED),
      ),
    )
    const lifecycle = yield* when(
      PluginCapability_Service_Type.TYPE_LIFECYCLE_SERVICE,
      Effect.map(
        callPlugin(target, "cnpgi.operator_lifecycle.v1.OperatorLifecycle/GetCapabilities", (signal) =>
          createClient(OperatorLifecycleDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => result.lifecycleCapabilities,
      ),
    )
    const walRpcs = yield* when(
      PluginCapability_Service_Type.TYPE_WAL_SERVICE,
      Effect.map(
        callPlugin(target, "cnpgi.wal.v1.WAL/GetCapabilities", (signal) =>
          createClient(WALDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => rpcTypes(result.capabilities, WALCapability_RPC_Type.TYPE_UNSPECIFIED),
      ),
    )
    const backupRpcs = yield* when(
      PluginCapability_Service_Type.TYPE_BACKUP_SERVICE,
      Effect.map(
        callPlugin(target, "cnpgi.backup.v1.Backup/GetCapabilities", (signal) =>
          createClient(BackupDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => rpcTypes(result.capabilities, BackupCapability_RPC_Type.TYPE_UNSPECIFIED),
      ),
    )
    const reconcilerKinds = yield* when(
      PluginCapability_Service_Type.TYPE_RECONCILER_HOOKS,
      Effect.map(
        callPlugin(target, "cnpgi.reconciler.v1.ReconcilerHooks/GetCapabilities", (signal) =>
          createClient(ReconcilerHooksDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => result.reconcilerCapabilities.map((capability) => capability.kind),
      ),
    )
    const restoreJobKinds = yield* when(
      PluginCapability_Service_Type.TYPE_RESTORE_JOB,
      Effect.map(
        callPlugin(target, "cnpgi.wal.v1.RestoreJobHooks/GetCapabilities", (signal) =>
          createClient(RestoreJobHooksDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => result.capabilities.map((capability) => capability.kind),
      ),
    )
    const postgresRpcs = yield* when(
      PluginCapability_Service_Type.TYPE_POSTGRES,
      Effect.map(
        callPlugin(target, "cnpgi.identity.v1.Postgres/GetCapabilities", (signal) =>
          createClient(PostgresDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => rpcTypes(result.capabilities, PostgresCapability_RPC_Type.TYPE_UNSPECIFIED),
      ),
    )
    const metricsRpcs = yield* when(
      PluginCapability_Service_Type.TYPE_METRICS,
      Effect.map(
        callPlugin(target, "cnpgi.metrics.v1.Metrics/GetCapabilities", (signal) =>
          createClient(MetricsDefinition, channel).getCapabilities({}, { signal }),
        ),
        (result) => rpcTypes(result.capabilities, MetricsCapability_RPC_Type.TYPE_UNSPECIFIED),
      ),
    )
    return {
      name: metadata.name,
      version: metadata.version,
      address,
      channel,
      callTimeoutMs,
      services,
      operatorRpcs,
      lifecycle,
      walRpcs,
      backupRpcs,
      reconcilerKinds,
      restoreJobKinds,
      postgresRpcs,
      metricsRpcs,
    }
  })

/**
 * `Ping`: Identity.Probe, which CloudNativePG calls each time it takes a connection from its pool,
 * before any call. Only an RPC error counts; `ready` is not read (`repository/connection.go`).
 */
export const probe = (plugin: LoadedPlugin): Effect.Effect<void, CallFailed> =>
  Effect.asVoid(
    callPlugin(plugin, "cnpgi.identity.v1.Identity/Probe", (signal) =>
      createClient(IdentityDefinition, plugin.channel).probe({}, { signal }),
    ),
  )

/** The capability gates of `internal/cnpi/plugin/client/*.go`. */
export const can = {
  archiveWal: (plugin: LoadedPlugin) => has(plugin.walRpcs, WALCapability_RPC_Type.TYPE_ARCHIVE_WAL),
  restoreWal: (plugin: LoadedPlugin) => has(plugin.walRpcs, WALCapability_RPC_Type.TYPE_RESTORE_WAL),
  backup: (plugin: LoadedPlugin) =>
    has(plugin.services, PluginCapability_Service_Type.TYPE_BACKUP_SERVICE) &&
    has(plugin.backupRpcs, BackupCapability_RPC_Type.TYPE_BACKUP),
  restoreJob: (plugin: LoadedPlugin) =>
    has(plugin.restoreJobKinds, RestoreJobHooksCapability_Kind.KIND_RESTORE),
  reconcile: (plugin: LoadedPlugin, kind: ReconcilerHooksCapability_Kind) =>
    has(plugin.reconcilerKinds, kind),
  setStatusInCluster: (plugin: LoadedPlugin) =>
    has(plugin.operatorRpcs, OperatorCapability_RPC_Type.TYPE_SET_STATUS_IN_CLUSTER),
  metrics: (plugin: LoadedPlugin) => has(plugin.metricsRpcs, MetricsCapability_RPC_Type.TYPE_METRICS),
} as const
