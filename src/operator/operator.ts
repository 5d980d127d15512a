import { Effect } from "effect"
import { Kubernetes } from "../adapters/kubernetes.js"
import { clusterNamespace, decodeClusterDefinition } from "../domain/cluster.js"
import { referencedStanzas, type StanzaLookup, usesPlugin } from "../domain/clusterStanzas.js"
import { repositories } from "../domain/stanza.js"
import {
  type OperatorCapabilitiesResult,
  OperatorCapability_RPC_Type,
  type OperatorDefinition,
} from "../generated/operator.js"
import type { EffectHandlers } from "../grpc/handlers.js"
import { lookupStanza } from "./reconcilerHooks.js"

/** One referenced Stanza as the Cluster's `status.pluginStatus[]` shows it. */
export type StanzaStatus =
  | {
      readonly name: string
      readonly namespace: string
      /** The pgBackRest stanza name (`spec.stanzaConfiguration.name`). */
      readonly stanza: string
      readonly repositories: number
    }
  | { readonly name: string; readonly error: string }

/** The JSON object CloudNativePG stores in `status.pluginStatus[name=pgbackrest.dalibo.com].status`. */
export interface PluginStatus {
  readonly stanzas: ReadonlyArray<StanzaStatus>
}

const statusOf = (namespace: string, name: string, lookup: StanzaLookup): StanzaStatus => {
  switch (lookup._tag) {
    case "Found": {
      const config = lookup.stanza.spec.stanzaConfiguration
      return { name, namespace, stanza: config.name, repositories: repositories(config).length }
    }
    case "Missing":
      return { name, error: "not found" }
    case "Invalid":
      return { name, error: lookup.error.message }
  }
}

// CloudNativePG 1.27 no longer calls ValidateClusterCreate/Change nor MutateCluster: only
// SetStatusInCluster is advertised. The others answer neutrally should an older operator call them.
const capabilities: OperatorCapabilitiesResult = {
  capabilities: [
    { type: { $case: "rpc", value: { type: OperatorCapability_RPC_Type.TYPE_SET_STATUS_IN_CLUSTER } } },
  ],
}

/**
 * CNPG-I Operator: after each successful Cluster reconcile, a short summary of the Stanzas the Cluster
 * references. A missing or unreadable Stanza shows in the status (the user sees it with
 * `kubectl get cluster -o yaml`) rather than failing the call, which would fail the whole reconcile;
 * only a Kubernetes API that cannot be reached is an error (CloudNativePG retries).
 */
export class Operator extends Effect.Service<Operator>()("cnpg-pgbackrest/Operator", {
  effect: Effect.gen(function* () {
    const kubernetes = yield* Kubernetes

    const stanzaStatus = (namespace: string, name: string) =>
      lookupStanza(kubernetes, namespace, name).pipe(
        Effect.map((lookup) => statusOf(namespace, name, lookup)),
        Effect.catchTags({
          PermissionDenied: (error) => Effect.succeed<StanzaStatus>({ name, error: error.message }),
          InvalidRequest: (error) => Effect.succeed<StanzaStatus>({ name, error: error.message }),
        }),
      )

    const handlers: EffectHandlers<typeof OperatorDefinition> = {
      getCapabilities: () => Effect.succeed(capabilities),
      validateClusterCreate: () => Effect.succeed({ validationErrors: [] }),
      validateClusterChange: () => Effect.succeed({ validationErrors: [] }),
      mutateCluster: () => Effect.succeed({ jsonPatch: Buffer.alloc(0) }),
      deregister: () => Effect.succeed({}),
      setStatusInCluster: Effect.fn("Operator.setStatusInCluster")(function* (request) {
        const cluster = yield* decodeClusterDefinition(request.cluster)
        if (!usesPlugin(cluster)) {
          // Empty: CloudNativePG leaves the status as it is.
          return { jsonStatus: Buffer.alloc(0) }
        }
        const namespace = clusterNamespace(cluster)
        const stanzas = yield* Effect.forEach(referencedStanzas(cluster), (reference) =>
          stanzaStatus(namespace, reference.name),
        )
        const status: PluginStatus = { stanzas }
        return { jsonStatus: Buffer.from(JSON.stringify(status), "utf8") }
      }),
    }
    return handlers
  }),
}) {}
