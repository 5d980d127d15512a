import {
  HttpMethod,
  IsomorphicFetchHttpLibrary,
  KubeConfig,
  PatchStrategy,
  RequestContext,
} from "@kubernetes/client-node"
import { Duration, Effect, Layer, Option, Schedule, Schema } from "effect"
import {
  FailedPrecondition,
  InvalidRequest,
  NotFound,
  PermissionDenied,
  Unavailable,
} from "../domain/errors.js"
import { PLUGIN_NAME, PLUGIN_VERSION } from "../domain/plugin.js"
import {
  decodeProblem,
  describeObject,
  KubernetesBackend,
  type KubernetesBackendShape,
  qualifiedResource,
  type ResourceRef,
  resourcePath,
  type WriteError,
} from "./kubernetesResource.js"

/**
 * Retries of transient API failures (network, 5xx, 429): 100 ms doubling, jittered (x0.8 to x1.2),
 * four retries, so at most about 1.8 s of waiting before the caller sees `Unavailable`.
 */
export const KubernetesRetry = Schedule.exponential(Duration.millis(100), 2).pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(4)),
)

/** One request's time limit: the API server answers reads in milliseconds; a hung connection must not hold a WAL archive. */
export const KUBERNETES_REQUEST_TIMEOUT = Duration.seconds(10)

const KUBERNETES_API = "Kubernetes API"

/** The parts of a `kind: Status` error body the plugin reads. */
const ApiStatus = Schema.parseJson(
  Schema.Struct({
    message: Schema.optional(Schema.String),
    details: Schema.optional(Schema.Struct({ name: Schema.optional(Schema.String) })),
  }),
)

/** Any object the API returns: checked for its envelope, then handed over whole. */
const ApiObject = Schema.Struct({ apiVersion: Schema.String, kind: Schema.String })

const BodyName = Schema.Struct({ metadata: Schema.Struct({ name: Schema.String }) })

interface Operation {
  readonly verb: "get" | "create" | "update" | "patch"
  readonly resource: ResourceRef
  readonly namespace: string
  readonly name?: string | undefined
  readonly subresource?: "status"
}

/** `get secrets/s3-creds in namespace db`: what RBAC was asked to allow. */
const actionOf = (op: Operation): string => {
  const target = [qualifiedResource(op.resource), op.name, op.subresource].filter(
    (part) => part !== undefined,
  )
  return `${op.verb} ${target.join("/")} in namespace ${op.namespace}`
}

const whatOf = (op: Operation): string => describeObject(op.resource, op.namespace, op.name ?? "(unnamed)")

const causeText = (error: unknown): string => {
  if (!(error instanceof Error)) {
    return String(error)
  }
  // undici reports "fetch failed" and keeps the useful part (ECONNREFUSED, a TLS error) in `cause`.
  return error.cause instanceof Error ? `${error.message}: ${error.cause.message}` : error.message
}

/** The error for a non-2xx answer. 409 only comes from writes; an unexpected 4xx is the request's fault. */
const failureOf = (op: Operation, status: number, body: string): WriteError => {
  const apiStatus = Schema.decodeUnknownOption(ApiStatus)(body)
  const apiMessage = Option.flatMapNullable(apiStatus, (s) => s.message).pipe(
    Option.getOrElse(() => `HTTP ${status}`),
  )
  if (status === 401) {
    return new PermissionDenied({
      action: actionOf(op),
      reason: `the API server did not accept the plugin's credentials (401): ${apiMessage}`,
    })
  }
  if (status === 403) {
    return new PermissionDenied({ action: actionOf(op), reason: apiMessage })
  }
  if (status === 404) {
    const aboutTheObject = Option.flatMapNullable(apiStatus, (s) => s.details?.name).pipe(
      Option.exists((name) => name === op.name),
    )
    // Not the object itself: a missing namespace, or the CRD is not installed.
    return aboutTheObject
      ? new NotFound({ what: whatOf(op) })
      : new NotFound({ what: whatOf(op), reason: apiMessage })
  }
  if (status === 409) {
    return new FailedPrecondition({ reason: `conflict: cannot ${actionOf(op)}: ${apiMessage}` })
  }
  if (status === 408 || status === 429 || status >= 500) {
    return new Unavailable({ what: KUBERNETES_API, reason: `${actionOf(op)}: HTTP ${status}: ${apiMessage}` })
  }
  return new InvalidRequest({
    field: whatOf(op),
    reason: `the Kubernetes API rejected "${actionOf(op)}" (HTTP ${status}): ${apiMessage}`,
  })
}

const isTransient = (error: WriteError): boolean => error._tag === "Unavailable"

/**
 * The transport over `@kubernetes/client-node`: the KubeConfig supplies the server, the credentials
 * (service account token, client certificates, exec plugins) and the TLS settings; requests are built
 * here so paths, content types and status codes are exactly what the API expects. The generated
 * `CustomObjectsApi.patch*` would send `application/json-patch+json` by default and cannot reach the
 * core group; `KubernetesObjectApi` needs discovery calls and has no status subresource.
 */
export const makeApiBackend = (kubeConfig: KubeConfig): Effect.Effect<KubernetesBackendShape, Unavailable> =>
  Effect.gen(function* () {
    const cluster = kubeConfig.getCurrentCluster()
    if (cluster === null) {
      return yield* new Unavailable({ what: KUBERNETES_API, reason: "the kubeconfig has no current cluster" })
    }
    const server = cluster.server.replace(/\/+$/, "")
    const http = new IsomorphicFetchHttpLibrary()

    const send = (
      op: Operation,
      method: HttpMethod,
      body?: { readonly contentType: string; readonly value: unknown },
    ): Effect.Effect<unknown, WriteError> => {
      // A create goes to the collection; its name (from the body) only serves the messages.
      const path =
        op.verb === "create"
          ? resourcePath(op.resource, op.namespace)
          : resourcePath(op.resource, op.namespace, op.name, op.subresource)
      return Effect.tryPromise({
        try: async (signal) => {
          const request = new RequestContext(`${server}${path}`, method)
          request.setHeaderParam("Accept", "application/json")
          request.setHeaderParam("User-Agent", `${PLUGIN_NAME}/${PLUGIN_VERSION}`)
          if (body !== undefined) {
            request.setHeaderParam("Content-Type", body.contentType)
            request.setBody(JSON.stringify(body.value))
          }
          request.setSignal(signal)
          await kubeConfig.applySecurityAuthentication(request)
          const response = await http.send(request).toPromise()
          return { status: response.httpStatusCode, text: await response.body.text() }
        },
        catch: (error) =>
          new Unavailable({ what: KUBERNETES_API, reason: `${actionOf(op)}: ${causeText(error)}` }),
      }).pipe(
        Effect.timeoutFail({
          duration: KUBERNETES_REQUEST_TIMEOUT,
          onTimeout: () =>
            new Unavailable({
              what: KUBERNETES_API,
              reason: `${actionOf(op)}: no answer within ${Duration.format(KUBERNETES_REQUEST_TIMEOUT)}`,
            }),
        }),
        Effect.flatMap(({ status, text }) =>
          status >= 200 && status <= 299 ? decodeObject(op, text) : Effect.fail(failureOf(op, status, text)),
        ),
        Effect.tapError((error) =>
          isTransient(error) ? Effect.logDebug("Kubernetes API call failed", error.message) : Effect.void,
        ),
        Effect.retry({ schedule: KubernetesRetry, while: isTransient }),
      )
    }

    return {
      get: (resource, namespace, name) =>
        send({ verb: "get", resource, namespace, name }, HttpMethod.GET).pipe(
          // A conflict cannot answer a read; should a proxy send one anyway, it is not the caller's to handle.
          Effect.catchTag("FailedPrecondition", (error) =>
            Effect.fail(
              new InvalidRequest({ field: describeObject(resource, namespace, name), reason: error.reason }),
            ),
          ),
        ),
      create: (resource, namespace, body) => {
        const name = Schema.decodeUnknownOption(BodyName)(body).pipe(
          Option.map((b) => b.metadata.name),
          Option.getOrUndefined,
        )
        return send({ verb: "create", resource, namespace, name }, HttpMethod.POST, {
          contentType: "application/json",
          value: body,
        })
      },
      replace: (resource, namespace, name, body) =>
        send({ verb: "update", resource, namespace, name }, HttpMethod.PUT, {
          contentType: "application/json",
          value: body,
        }),
      patchStatus: (resource, namespace, name, status) =>
        send({ verb: "patch", resource, namespace, name, subresource: "status" }, HttpMethod.PATCH, {
          contentType: PatchStrategy.MergePatch,
          value: { status },
        }),
    }
  })

const decodeObject = (op: Operation, text: string): Effect.Effect<unknown, Unavailable> => {
  const undecodable = (problem: string) =>
    new Unavailable({
      what: KUBERNETES_API,
      reason: `${actionOf(op)}: the response does not decode as a Kubernetes object: ${problem}`,
    })
  // Neither message quotes the body: it may be (part of) a Secret.
  return Schema.decodeUnknown(Schema.parseJson())(text).pipe(
    Effect.mapError(() => undecodable("it is not JSON")),
    Effect.tap((json) =>
      Schema.decodeUnknown(ApiObject)(json).pipe(
        Effect.mapError((error) => undecodable(decodeProblem(error))),
      ),
    ),
  )
}

/** The API backend from an explicit KubeConfig (tests point one at a fake API server). */
export const apiBackendLayer = (kubeConfig: KubeConfig): Layer.Layer<KubernetesBackend, Unavailable> =>
  Layer.effect(KubernetesBackend, makeApiBackend(kubeConfig))

/** The API backend from the environment: the pod's service account in a cluster, else KUBECONFIG. */
export const defaultApiBackendLayer: Layer.Layer<KubernetesBackend, Unavailable> = Layer.unwrapEffect(
  Effect.try({
    try: () => {
      const kubeConfig = new KubeConfig()
      kubeConfig.loadFromDefault()
      return apiBackendLayer(kubeConfig)
    },
    catch: (error) =>
      new Unavailable({ what: KUBERNETES_API, reason: `cannot load the kubeconfig: ${causeText(error)}` }),
  }),
)
