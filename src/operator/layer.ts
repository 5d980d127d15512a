import * as NodeContext from "@effect/platform-node/NodeContext"
import { Effect, Layer } from "effect"
import type { ConfigError } from "effect/ConfigError"
import { Kubernetes } from "../adapters/kubernetes.js"
import type { ServerStartFailed, Unavailable } from "../domain/errors.js"
import { IdentityDefinition, PluginCapability_Service_Type } from "../generated/identity.js"
import { OperatorDefinition } from "../generated/operator.js"
import { OperatorLifecycleDefinition } from "../generated/operator_lifecycle.js"
import { ReconcilerHooksDefinition } from "../generated/reconciler.js"
import { implement } from "../grpc/handlers.js"
import { healthRegistration } from "../grpc/health.js"
import { Identity, ServedCapabilities } from "../grpc/identity.js"
import { type MutualTlsFiles, serveMutualTls } from "../grpc/server.js"
import { Operator } from "./operator.js"
import { Lifecycle, SidecarSettings } from "./operatorLifecycle.js"
import { Reconciler } from "./reconcilerHooks.js"

export interface OperatorRoleSettings extends MutualTlsFiles {
  readonly serverAddress: string
}

/** What the operator-side plugin serves, as Identity advertises it to CloudNativePG. */
export const OPERATOR_CAPABILITIES: ReadonlyArray<PluginCapability_Service_Type> = [
  PluginCapability_Service_Type.TYPE_LIFECYCLE_SERVICE,
  PluginCapability_Service_Type.TYPE_INSTANCE_SIDECAR_INJECTION,
  PluginCapability_Service_Type.TYPE_RECONCILER_HOOKS,
  PluginCapability_Service_Type.TYPE_OPERATOR_SERVICE,
]

/**
 * The operator-side plugin: CNPG-I over TCP with mutual TLS, reached by CloudNativePG through the
 * `pgbackrest` Service. It injects the sidecars, keeps each Cluster's Role and RoleBinding, checks
 * Stanzas and Backup parameters before reconciliation, and reports the plugin's view in the Cluster
 * status.
 */
export const OperatorServerLive = (
  settings: OperatorRoleSettings,
): Layer.Layer<never, ServerStartFailed, Identity | Lifecycle | Reconciler | Operator> =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const cnpg = [
        implement(IdentityDefinition, yield* Identity, runtime),
        implement(OperatorLifecycleDefinition, yield* Lifecycle, runtime),
        implement(ReconcilerHooksDefinition, yield* Reconciler, runtime),
        implement(OperatorDefinition, yield* Operator, runtime),
      ]
      yield* serveMutualTls(settings.serverAddress, settings, [
        ...cnpg,
        healthRegistration(cnpg.map((service) => service.name)),
      ])
    }),
  ).pipe(Layer.provide(NodeContext.layer))

export const OperatorLive = (
  settings: OperatorRoleSettings,
): Layer.Layer<never, ServerStartFailed | Unavailable | ConfigError> =>
  OperatorServerLive(settings).pipe(
    Layer.provide(
      Layer.mergeAll(
        Identity.Default.pipe(Layer.provide(Layer.succeed(ServedCapabilities, OPERATOR_CAPABILITIES))),
        Lifecycle.Default.pipe(Layer.provide(SidecarSettings.fromConfig)),
        Reconciler.Default,
        Operator.Default,
      ),
    ),
    Layer.provide(Kubernetes.Api),
  )
