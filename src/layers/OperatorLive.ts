import { NodeContext } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import type { ServerStartFailed } from "../domain/errors.js"
import { IdentityDefinition, type PluginCapability_Service_Type } from "../generated/identity.js"
import { healthRegistration } from "../services/health.js"
import { Identity, ServedCapabilities } from "../services/identity.js"
import { implement, type MutualTlsFiles, serveMutualTls } from "./grpc.js"

export interface OperatorRoleSettings extends MutualTlsFiles {
  readonly serverAddress: string
}

/**
 * The operator-side plugin: CNPG-I over TCP with mutual TLS, reached by CloudNativePG through the
 * `pgbackrest` Service. OperatorLifecycle, ReconcilerHooks and Operator join as they are built; until
 * then Identity advertises nothing it does not serve.
 */
export const OperatorLive = (settings: OperatorRoleSettings): Layer.Layer<never, ServerStartFailed> => {
  const capabilities: ReadonlyArray<PluginCapability_Service_Type> = []
  return Layer.scopedDiscard(
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const identity = yield* Identity
      const cnpg = [implement(IdentityDefinition, identity, runtime)]
      yield* serveMutualTls(settings.serverAddress, settings, [
        ...cnpg,
        healthRegistration(cnpg.map((service) => service.name)),
      ])
    }),
  ).pipe(
    Layer.provide(Identity.Default),
    Layer.provide(Layer.succeed(ServedCapabilities, capabilities)),
    Layer.provide(NodeContext.layer),
  )
}
