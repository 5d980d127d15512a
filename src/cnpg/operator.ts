import * as tls from "node:tls"
import { ChannelCredentials } from "@grpc/grpc-js"
import { Effect, Either, Schema, type Scope } from "effect"
import fastJsonPatch from "fast-json-patch"
import { createClient, Status } from "nice-grpc"
import { decodeWithPath } from "../domain/decode.js"
import { CallFailed } from "../domain/errors.js"
import { OperatorDefinition } from "../generated/operator.js"
import {
  OperatorLifecycleDefinition,
  type OperatorOperationType_Type,
} from "../generated/operator_lifecycle.js"
import {
  type ReconcilerHooksCapability_Kind,
  ReconcilerHooksDefinition,
  ReconcilerHooksResult_Behavior,
} from "../generated/reconciler.js"
import { callPlugin, can, type LoadedPlugin, loadPlugin, openChannel, probe } from "./connection.js"

/**
 * A port of how CloudNativePG's operator reaches a plugin's own Deployment (read at a95a534,
 * v1.30.0-86): discovery from the plugin's Service (`controller/plugin_controller.go`), mutual TLS
 * 1.3 with the server Secret's certificate as the only root, a 30 s deadline on every call, and the
 * lifecycle, reconciler and status hooks as `internal/cnpi/plugin/client/*.go` drive them.
 */

/** Every call over TCP carries this deadline (`defaultNetworkCallTimeout`, connection.go). */
export const NETWORK_CALL_TIMEOUT_MS = 30_000

const PLUGIN_NAME_LABEL = "cnpg.io/pluginName"
const CLIENT_SECRET = "cnpg.io/pluginClientSecret"
const SERVER_SECRET = "cnpg.io/pluginServerSecret"
const PORT = "cnpg.io/pluginPort"
const SERVER_NAME = "cnpg.io/pluginServerName"

const Service = Schema.Struct({
  metadata: Schema.Struct({
    name: Schema.String,
    namespace: Schema.String,
    labels: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
    annotations: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  }),
})

/** What the operator reads of a plugin Service: how to dial it, and with which Secrets. */
export interface PluginService {
  readonly pluginName: string
  /** `<service>.<namespace>.svc:<port>`. */
  readonly address: string
  /** The TLS server name checked: `cnpg.io/pluginServerName`, else the Service's name. */
  readonly serverName: string
  readonly clientSecret: string
  readonly serverSecret: string
}

const failed = (address: string, rpc: string, code: Status, reason: string) =>
  new CallFailed({ address, rpc, code, reason })

/**
 * `isPluginService` and `reconcile`: a Service in the operator's namespace with the plugin-name label
 * and the three annotations is a plugin; anything else is not one (an error that says why).
 */
export const pluginServiceOf = (
  object: unknown,
  operatorNamespace: string,
): Either.Either<PluginService, CallFailed> =>
  Either.flatMap(
    Either.mapLeft(decodeWithPath(Service, "service", { strict: false })(object), (error) =>
      failed("", "discover", Status.INVALID_ARGUMENT, error.message),
    ),
    (service): Either.Either<PluginService, CallFailed> => {
      const { name, namespace, labels = {}, annotations = {} } = service.metadata
      const refuse = (reason: string) =>
        Either.left(failed(name, "discover", Status.FAILED_PRECONDITION, reason))
      const pluginName = labels[PLUGIN_NAME_LABEL]
      const clientSecret = annotations[CLIENT_SECRET]
      const serverSecret = annotations[SERVER_SECRET]
      const port = annotations[PORT]
      if (namespace !== operatorNamespace) return refuse(`not in the operator namespace ${operatorNamespace}`)
      if (pluginName === undefined) return refuse(`no ${PLUGIN_NAME_LABEL} label`)
      if (clientSecret === undefined || serverSecret === undefined || port === undefined) {
        return refuse(`needs the annotations ${CLIENT_SECRET}, ${SERVER_SECRET} and ${PORT}`)
      }
      return Either.right({
        pluginName,
        address: `${name}.${namespace}.svc:${port}`,
        serverName: annotations[SERVER_NAME] ?? name,
        clientSecret,
        serverSecret,
      })
    },
  )

/** The PEM files the operator reads from the two Secrets the Service names. */
export interface PluginSecrets {
  /** `tls.crt` of the server Secret: the only certificate trusted. */
  readonly serverCertificate: string | Buffer
  /** `tls.crt` and `tls.key` of the client Secret: what the operator presents. */
  readonly clientCertificate: string | Buffer
  readonly clientKey: string | Buffer
}

/**
 * Dials the plugin as the operator does and runs LoadPlugin on the connection. `connectTo` replaces
 * the Service's cluster DNS name (`host:port`) where it does not resolve, as on a test machine; the
 * TLS server name is still the one the operator checks.
 */
export const dialPluginService = (
  service: PluginService,
  secrets: PluginSecrets,
  connectTo: string = service.address,
): Effect.Effect<LoadedPlugin, CallFailed, Scope.Scope> =>
  Effect.gen(function* () {
    // Go trusts any certificate of its RootCAs as an anchor: CloudNativePG pins the server Secret's
    // tls.crt, a leaf. OpenSSL does the same only with a partial chain allowed.
    const context = tls.createSecureContext({
      minVersion: "TLSv1.3",
      allowPartialTrustChain: true,
      ca: secrets.serverCertificate,
      cert: secrets.clientCertificate,
      key: secrets.clientKey,
    })
    const channel = yield* openChannel(connectTo, ChannelCredentials.createFromSecureContext(context), {
      "grpc.ssl_target_name_override": service.serverName,
      "grpc.default_authority": service.serverName,
    })
    const plugin = yield* loadPlugin(channel, service.address, NETWORK_CALL_TIMEOUT_MS)
    if (plugin.name !== service.pluginName) {
      return yield* failed(
        service.address,
        "cnpgi.identity.v1.Identity/GetPluginMetadata",
        Status.FAILED_PRECONDITION,
        `the Service is labelled ${service.pluginName} but the plugin calls itself ${plugin.name}`,
      )
    }
    return plugin
  })

const groupOf = (apiVersion: string | undefined): string =>
  apiVersion?.includes("/") ? (apiVersion.split("/")[0] ?? "") : ""

const TypeMeta = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
})

const bytes = (value: unknown) => Buffer.from(JSON.stringify(value))

/**
 * `LifecycleHook` (`client/lifecycle.go`): every plugin with a capability for the object's group,
 * kind and operation is called in order, each with the object as the previous ones patched it; an
 * empty patch is no change. Returns the object as the last plugin left it.
 */
export const lifecycleHook = (
  plugins: ReadonlyArray<LoadedPlugin>,
  operation: OperatorOperationType_Type,
  cluster: unknown,
  object: unknown,
): Effect.Effect<unknown, CallFailed> =>
  Effect.gen(function* () {
    const rpc = "cnpgi.operator_lifecycle.v1.OperatorLifecycle/LifecycleHook"
    const meta = Schema.decodeUnknownOption(TypeMeta)(object)
    const group = meta._tag === "Some" ? groupOf(meta.value.apiVersion) : ""
    const kind = meta._tag === "Some" ? meta.value.kind : undefined
    let current = object
    for (const plugin of plugins) {
      const invoked = plugin.lifecycle.some(
        (capability) =>
          capability.group === group &&
          capability.kind === kind &&
          capability.operationTypes.some((type) => type.type === operation),
      )
      if (!invoked) continue
      yield* probe(plugin)
      const result = yield* callPlugin(plugin, rpc, (signal) =>
        createClient(OperatorLifecycleDefinition, plugin.channel).lifecycleHook(
          {
            operationType: { type: operation },
            clusterDefinition: bytes(cluster),
            objectDefinition: bytes(current),
          },
          { signal },
        ),
      )
      if (result.jsonPatch.length === 0) continue
      const patched = Either.try({
        try: (): unknown => {
          const operations: ReadonlyArray<fastJsonPatch.Operation> = JSON.parse(
            result.jsonPatch.toString("utf8"),
          )
          return fastJsonPatch.applyPatch(structuredClone(current), [...operations], true, false).newDocument
        },
        catch: (error) =>
          failed(plugin.address, rpc, Status.INTERNAL, `the patch does not apply: ${String(error)}`),
      })
      current = yield* patched
    }
    return current
  })

/** How the reconciler hooks end CloudNativePG's reconcile loop. */
export type ReconcileOutcome =
  | { readonly _tag: "Continue" }
  | { readonly _tag: "Requeue"; readonly afterSeconds: number }
  | { readonly _tag: "Terminate" }

/**
 * `PreReconcile` / `PostReconcile` (`client/reconciler.go`, v1.29+): the plugins with the hook kind
 * of the object are called in order; CONTINUE goes on to the next, REQUEUE and TERMINATE stop the loop.
 */
export const reconcilerHook = (
  plugins: ReadonlyArray<LoadedPlugin>,
  phase: "pre" | "post",
  kind: ReconcilerHooksCapability_Kind,
  cluster: unknown,
  resource: unknown,
): Effect.Effect<ReconcileOutcome, CallFailed> =>
  Effect.gen(function* () {
    const rpc = `cnpgi.reconciler.v1.ReconcilerHooks/${phase === "pre" ? "Pre" : "Post"}`
    for (const plugin of plugins.filter((candidate) => can.reconcile(candidate, kind))) {
      yield* probe(plugin)
      const client = createClient(ReconcilerHooksDefinition, plugin.channel)
      const request = { clusterDefinition: bytes(cluster), resourceDefinition: bytes(resource) }
      const result = yield* callPlugin(plugin, rpc, (signal) =>
        phase === "pre" ? client.pre(request, { signal }) : client.post(request, { signal }),
      )
      if (result.behavior === ReconcilerHooksResult_Behavior.BEHAVIOR_REQUEUE) {
        return { _tag: "Requeue", afterSeconds: result.requeueAfter }
      }
      if (result.behavior === ReconcilerHooksResult_Behavior.BEHAVIOR_TERMINATE) {
        return { _tag: "Terminate" }
      }
    }
    return { _tag: "Continue" }
  })

/**
 * `SetStatusInCluster` (`client/cluster.go`, `controller/plugins.go`): the statuses of the plugins
 * that answered something, by plugin name. An empty answer leaves the stored status alone; any
 * non-empty one makes the operator patch the Cluster and requeue it after 5 s; one that is not a JSON
 * object is an error.
 */
export const setStatusInCluster = (
  plugins: ReadonlyArray<LoadedPlugin>,
  cluster: unknown,
): Effect.Effect<ReadonlyMap<string, string>, CallFailed> =>
  Effect.gen(function* () {
    const rpc = "cnpgi.operator.v1.Operator/SetStatusInCluster"
    const statuses = new Map<string, string>()
    for (const plugin of plugins.filter(can.setStatusInCluster)) {
      yield* probe(plugin)
      const result = yield* callPlugin(plugin, rpc, (signal) =>
        createClient(OperatorDefinition, plugin.channel).setStatusInCluster(
          { cluster: bytes(cluster) },
          { signal },
        ),
      )
      if (result.jsonStatus.length === 0) continue
      const text = result.jsonStatus.toString("utf8")
      const isObject = Either.getOrElse(
        Either.try(() => {
          const value: unknown = JSON.parse(text)
          return typeof value === "object" && value !== null && !Array.isArray(value)
        }),
        () => false,
      )
      if (!isObject) {
        return yield* failed(plugin.address, rpc, Status.INTERNAL, "the status is not a JSON object")
      }
      statuses.set(plugin.name, text)
    }
    return statuses
  })
