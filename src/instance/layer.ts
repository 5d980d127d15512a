import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect, Layer } from "effect"
import type { ConfigError } from "effect/ConfigError"
import { Kubernetes } from "../adapters/kubernetes.js"
import { PgBackRest } from "../adapters/pgBackRest.js"
import { Secrets } from "../adapters/secrets.js"
import { StanzaState, StanzaStateSettings } from "../adapters/stanzaState.js"
import type { InvalidRequest, ServerStartFailed, SocketInUse, Unavailable } from "../domain/errors.js"
import { BackupDefinition } from "../generated/backup.js"
import { IdentityDefinition, PluginCapability_Service_Type } from "../generated/identity.js"
import { MetricsDefinition } from "../generated/metrics.js"
import { RestoreJobHooksDefinition } from "../generated/restore_job.js"
import { WALDefinition } from "../generated/wal.js"
import { implement, type Registration } from "../grpc/handlers.js"
import { healthRegistration } from "../grpc/health.js"
import { Identity, ServedCapabilities } from "../grpc/identity.js"
import { serveUnixSocket } from "../grpc/server.js"
import { Backup } from "./backup.js"
import { Metrics } from "./metrics.js"
import { RestoreJob } from "./restoreJobHooks.js"
import { InstanceSettings, InstanceSettingsLive, PluginRole } from "./settings.js"
import { StanzaResolver } from "./stanzaResolver.js"
import { StanzaStatus } from "./stanzaStatusWriter.js"
import { Wal } from "./wal.js"

/** Where a socket role listens (`<plugin-path>/pgbackrest.dalibo.com`), and where it reads objects from. */
export interface SocketRoleSettings {
  readonly socketPath: string
  /** Local mode: manifests in this directory stand in for the Kubernetes API. */
  readonly manifests?: string
}

type ServeError = SocketInUse | ServerStartFailed

/**
 * A CNPG-I server on the plugin's unix socket for as long as the layer lives: Identity (advertising
 * `capabilities`), the role's services, and the gRPC health service.
 */
export const SocketServerLive = <R>(
  settings: SocketRoleSettings,
  capabilities: ReadonlyArray<PluginCapability_Service_Type>,
  services: Effect.Effect<ReadonlyArray<Registration>, never, R>,
): Layer.Layer<never, ServeError, R> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const identity = yield* Identity
      const cnpg = [implement(IdentityDefinition, identity, runtime), ...(yield* services)]
      yield* serveUnixSocket(settings.socketPath, [
        ...cnpg,
        healthRegistration(cnpg.map((service) => service.name)),
      ])
    }),
  ).pipe(
    Layer.provide(Identity.Default),
    Layer.provide(Layer.succeed(ServedCapabilities, capabilities)),
    Layer.provide(NodeContext.layer),
  )

/** The Kubernetes API, or the manifests of a directory in local mode. */
export const KubernetesFor = (
  settings: SocketRoleSettings,
): Layer.Layer<Kubernetes, Unavailable | InvalidRequest> =>
  settings.manifests === undefined
    ? Kubernetes.Api
    : Kubernetes.Local(settings.manifests).pipe(Layer.provide(NodeContext.layer))

/** What the socket roles' services share over a given Kubernetes: one resolver, state and pgBackRest. */
export const SharedServicesLive = <E, R>(kubernetes: Layer.Layer<Kubernetes, E, R>) => {
  const secrets = Secrets.Default.pipe(Layer.provide(kubernetes))
  const resolver = StanzaResolver.Default.pipe(
    Layer.provide(Layer.mergeAll(kubernetes, secrets, NodeContext.layer)),
  )
  const state = Layer.unwrapEffect(
    InstanceSettings.pipe(
      Effect.map((settings) =>
        StanzaState.Default.pipe(
          Layer.provide(StanzaStateSettings.layer(settings.stateFile)),
          Layer.provide(NodeContext.layer),
        ),
      ),
    ),
  )
  return Layer.mergeAll(resolver, state, PgBackRest.Default, NodeContext.layer)
}

/**
 * WAL archiving, backups, the Stanza status (refreshed periodically and after each backup, by the
 * primary) and metrics, over a given Kubernetes.
 */
export const InstanceServicesLive = <E, R>(kubernetes: Layer.Layer<Kubernetes, E, R>) => {
  const shared = SharedServicesLive(kubernetes)
  const walAndBackup = Layer.mergeAll(Wal.Default, Backup.Default).pipe(Layer.provide(shared))
  const status = StanzaStatus.Default.pipe(Layer.provide(Layer.mergeAll(walAndBackup, shared, kubernetes)))
  const metrics = Metrics.Default.pipe(Layer.provide(status))
  return Layer.mergeAll(walAndBackup, status, metrics, StanzaStatus.Periodic.pipe(Layer.provide(status)))
}

/** The sidecar of every PostgreSQL pod: WAL archiving and restore, backups, metrics. */
export const InstanceLive = (
  settings: SocketRoleSettings,
): Layer.Layer<never, ServeError | Unavailable | InvalidRequest | ConfigError> =>
  SocketServerLive(
    settings,
    [
      PluginCapability_Service_Type.TYPE_WAL_SERVICE,
      PluginCapability_Service_Type.TYPE_BACKUP_SERVICE,
      PluginCapability_Service_Type.TYPE_METRICS,
    ],
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const wal = yield* Wal
      const backup = yield* Backup
      const status = yield* StanzaStatus
      const metrics = yield* Metrics
      return [
        implement(WALDefinition, wal.handlers, runtime),
        implement(BackupDefinition, status.afterBackup(backup.handlers), runtime),
        implement(MetricsDefinition, metrics, runtime),
      ]
    }),
  ).pipe(
    Layer.provide(InstanceServicesLive(KubernetesFor(settings))),
    Layer.provide(InstanceSettingsLive),
    Layer.provide(Layer.succeed(PluginRole, "instance")),
  )

/** The sidecar of the full-recovery Job: restores PGDATA, then serves WAL to the recovering server. */
export const RestoreLive = (
  settings: SocketRoleSettings,
): Layer.Layer<never, ServeError | Unavailable | InvalidRequest | ConfigError> =>
  SocketServerLive(
    settings,
    [PluginCapability_Service_Type.TYPE_RESTORE_JOB, PluginCapability_Service_Type.TYPE_WAL_SERVICE],
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const restore = yield* RestoreJob
      const wal = yield* Wal
      return [
        implement(RestoreJobHooksDefinition, restore, runtime),
        implement(WALDefinition, wal.handlers, runtime),
      ]
    }),
  ).pipe(
    Layer.provide(
      Layer.mergeAll(RestoreJob.Default, Wal.Default).pipe(
        Layer.provide(SharedServicesLive(KubernetesFor(settings))),
      ),
    ),
    Layer.provide(InstanceSettingsLive),
    Layer.provide(Layer.succeed(PluginRole, "restore")),
  )
