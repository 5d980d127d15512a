import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import type { ServerStartFailed, SocketInUse } from "../domain/errors.js"
import { IdentityDefinition, type PluginCapability_Service_Type } from "../generated/identity.js"
import { healthRegistration } from "../services/health.js"
import { Identity, ServedCapabilities } from "../services/identity.js"
import { implement, serveUnixSocket } from "./grpc.js"

/** Where a socket role listens: `<plugin-path>/pgbackrest.dalibo.com`. */
export interface SocketRoleSettings {
  readonly socketPath: string
}

/**
 * A CNPG-I server on the plugin's unix socket, serving Identity (advertising `capabilities`) and the
 * gRPC health service, for as long as the layer lives. The `instance` and `restore` roles are this
 * server with their own services.
 */
export const SocketServerLive = (
  settings: SocketRoleSettings,
  capabilities: ReadonlyArray<PluginCapability_Service_Type>,
): Layer.Layer<never, SocketInUse | ServerStartFailed> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const identity = yield* Identity
      const cnpg = [implement(IdentityDefinition, identity, runtime)]
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

/** The sidecar of every PostgreSQL pod. WAL, Backup and Metrics join as they are built. */
export const InstanceLive = (settings: SocketRoleSettings) => SocketServerLive(settings, [])

/** The sidecar of the full-recovery Job. RestoreJobHooks and WAL restore join as they are built. */
export const RestoreLive = (settings: SocketRoleSettings) => SocketServerLive(settings, [])
