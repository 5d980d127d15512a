import { Clock, Data, Duration, Effect, Equal, HashMap, Option, Ref } from "effect"
import { Kubernetes } from "../adapters/kubernetes.js"
import { type Cluster, clusterNamespace, decodeClusterDefinition } from "../domain/cluster.js"
import { referencedStanzas, type StanzaLookup, usesPlugin } from "../domain/clusterStanzas.js"
import { PLUGIN_NAME } from "../domain/plugin.js"
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
 * How long the same status is not answered again for a Cluster whose request carries none. Released
 * CloudNativePG (1.27 to 1.30) rebuilds `status.pluginStatus` without the plugins' `status` at the start
 * of every reconcile (`updatePluginsStatus`), so the request never shows what was stored; and any
 * non-empty answer patches the Cluster and requeues it after 5 s (`plugins.go`, issue #11385). Answering
 * again only after this delay keeps that to one extra reconcile instead of a loop every 5 s.
 */
export const STATUS_REPEAT_AFTER = Duration.minutes(10)

/** What the request says CloudNativePG stored from our last answer, parsed; none if absent or not JSON. */
const storedStatus = (cluster: Cluster): Option.Option<unknown> => {
  const text = cluster.status?.pluginStatus?.find((entry) => entry.name === PLUGIN_NAME)?.status
  if (text === undefined || text === "") {
    return Option.none()
  }
  try {
    return Option.some(JSON.parse(text))
  } catch {
    return Option.none()
  }
}

/** JSON values compared by content: key order does not matter. */
const sameJson = (a: unknown, b: unknown): boolean => Equal.equals(toData(a), toData(b))

const toData = (value: unknown): unknown => {
  if (Array.isArray(value)) {
    return Data.array(value.map(toData))
  }
  if (typeof value === "object" && value !== null) {
    return Data.struct(Object.fromEntries(Object.entries(value).map(([key, item]) => [key, toData(item)])))
  }
  return value
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
    // Cluster (namespace/name) -> the status last answered and when, for STATUS_REPEAT_AFTER.
    const answered = yield* Ref.make(HashMap.empty<string, { readonly json: string; readonly at: number }>())

    const EMPTY = { jsonStatus: Buffer.alloc(0) }

    /** Empty when CloudNativePG holds this status already, or was given it a moment ago. */
    const answer = (key: string, cluster: Cluster, status: PluginStatus) =>
      Effect.gen(function* () {
        const stored = storedStatus(cluster)
        if (Option.isSome(stored) && sameJson(stored.value, status)) {
          return EMPTY
        }
        const json = JSON.stringify(status)
        const now = yield* Clock.currentTimeMillis
        const last = HashMap.get(yield* Ref.get(answered), key)
        if (
          Option.isNone(stored) &&
          Option.isSome(last) &&
          last.value.json === json &&
          now - last.value.at < Duration.toMillis(STATUS_REPEAT_AFTER)
        ) {
          return EMPTY
        }
        yield* Ref.update(answered, HashMap.set(key, { json, at: now }))
        return { jsonStatus: Buffer.from(json, "utf8") }
      })

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
          return EMPTY
        }
        const namespace = clusterNamespace(cluster)
        const stanzas = yield* Effect.forEach(referencedStanzas(cluster), (reference) =>
          stanzaStatus(namespace, reference.name),
        )
        return yield* answer(`${namespace}/${cluster.metadata.name}`, cluster, { stanzas })
      }),
    }
    return handlers
  }),
}) {}
