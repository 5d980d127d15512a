import type { KubeConfig } from "@kubernetes/client-node"
import { Effect, Either, Encoding, Layer, Redacted, Schema } from "effect"
import { type InvalidRequest, Unavailable } from "../domain/errors.js"
import { apiBackendLayer, defaultApiBackendLayer } from "./kubernetesApi.js"
import { localBackendLayer } from "./kubernetesLocal.js"
import { makeMemoryBackend } from "./kubernetesMemory.js"
import {
  decodeProblem,
  describeObject,
  KubernetesBackend,
  type ReadError,
  type ResourceRef,
  Resources,
} from "./kubernetesResource.js"

export { KUBERNETES_REQUEST_TIMEOUT, KubernetesRetry } from "./kubernetesApi.js"
export { mergePatch } from "./kubernetesMemory.js"
export { type ReadError, type ResourceRef, Resources, type WriteError } from "./kubernetesResource.js"

/** A Secret's values by key. Wrapped in `Redacted` as soon as decoded: logs and errors show `<redacted>`. */
export type SecretValues = Readonly<Record<string, Redacted.Redacted<string>>>

const StringMap = Schema.Record({ key: Schema.String, value: Schema.String })

/** The part of a Secret the plugin reads. The API server only returns `data`; manifests may use `stringData`. */
const SecretData = Schema.Struct({
  data: Schema.optional(Schema.NullOr(StringMap)),
  stringData: Schema.optional(Schema.NullOr(StringMap)),
})

const secretValues = (raw: unknown, what: string): Effect.Effect<SecretValues, Unavailable> =>
  Effect.gen(function* () {
    const secret = yield* Schema.decodeUnknown(SecretData)(raw).pipe(
      Effect.mapError(
        (error) =>
          new Unavailable({
            what: "Kubernetes API",
            reason: `${what} does not decode as a Secret: ${decodeProblem(error)}`,
          }),
      ),
    )
    const values: Array<readonly [string, Redacted.Redacted<string>]> = []
    for (const [key, encoded] of Object.entries(secret.data ?? {})) {
      // Go's decoder, which the API server uses, skips line breaks inside base64.
      const decoded = Encoding.decodeBase64String(encoded.replace(/[\r\n]/g, ""))
      if (Either.isLeft(decoded)) {
        return yield* new Unavailable({
          what: "Kubernetes API",
          reason: `${what}: data.${key} is not valid base64`,
        })
      }
      values.push([key, Redacted.make(decoded.right)])
    }
    // As on a real write, stringData wins over data for the same key.
    for (const [key, value] of Object.entries(secret.stringData ?? {})) {
      values.push([key, Redacted.make(value)])
    }
    return Object.fromEntries(values)
  })

/**
 * The plugin's only door to the Kubernetes API. Methods return raw JSON as `unknown` (callers decode it
 * with their Schema), except `getSecret`, whose values come back already `Redacted`.
 *
 * Layers: `Kubernetes.Api` (service account or KUBECONFIG), `Kubernetes.fromKubeConfig(kc)`,
 * `Kubernetes.Local(dir)` (manifests in a directory), `Kubernetes.Fake(objects)` (in memory, for tests).
 */
export class Kubernetes extends Effect.Service<Kubernetes>()("cnpg-pgbackrest/Kubernetes", {
  effect: Effect.gen(function* () {
    const backend = yield* KubernetesBackend

    const get = Effect.fn("Kubernetes.get")((resource: ResourceRef, namespace: string, name: string) =>
      backend.get(resource, namespace, name),
    )
    const create = Effect.fn("Kubernetes.create")((resource: ResourceRef, namespace: string, body: unknown) =>
      backend.create(resource, namespace, body),
    )
    const replace = Effect.fn("Kubernetes.replace")(
      (resource: ResourceRef, namespace: string, name: string, body: unknown) =>
        backend.replace(resource, namespace, name, body),
    )
    /** JSON merge patch (`application/merge-patch+json`) of `{ status }` on the status subresource. */
    const patchStatus = Effect.fn("Kubernetes.patchStatus")(
      (resource: ResourceRef, namespace: string, name: string, status: unknown) =>
        backend.patchStatus(resource, namespace, name, status),
    )

    return {
      get,
      create,
      replace,
      patchStatus,
      getCluster: Effect.fn("Kubernetes.getCluster")((namespace: string, name: string) =>
        backend.get(Resources.cluster, namespace, name),
      ),
      getStanza: Effect.fn("Kubernetes.getStanza")((namespace: string, name: string) =>
        backend.get(Resources.stanza, namespace, name),
      ),
      getSecret: Effect.fn("Kubernetes.getSecret")(function* (namespace: string, name: string) {
        const raw = yield* backend.get(Resources.secret, namespace, name)
        return yield* secretValues(raw, describeObject(Resources.secret, namespace, name))
      }) satisfies (namespace: string, name: string) => Effect.Effect<SecretValues, ReadError>,
      patchStanzaStatus: Effect.fn("Kubernetes.patchStanzaStatus")(
        (namespace: string, name: string, status: unknown) =>
          backend.patchStatus(Resources.stanza, namespace, name, status),
      ),
    }
  }),
}) {
  /** The API server of the pod's service account, or of KUBECONFIG outside a cluster. */
  static readonly Api: Layer.Layer<Kubernetes, Unavailable> = Kubernetes.Default.pipe(
    Layer.provide(defaultApiBackendLayer),
  )

  /** The API server an explicit KubeConfig points at. */
  static readonly fromKubeConfig = (kubeConfig: KubeConfig): Layer.Layer<Kubernetes, Unavailable> =>
    Kubernetes.Default.pipe(Layer.provide(apiBackendLayer(kubeConfig)))

  /** Local mode: the manifests of `dir`; status patches also land in `<dir>/.status/`. */
  static readonly Local = (dir: string) => Kubernetes.Default.pipe(Layer.provide(localBackendLayer(dir)))

  /** In memory, from manifests as objects (a missing namespace means `default`). */
  static readonly Fake = (objects: ReadonlyArray<unknown>): Layer.Layer<Kubernetes, InvalidRequest> =>
    Kubernetes.Default.pipe(
      Layer.provide(
        Layer.effect(
          KubernetesBackend,
          makeMemoryBackend(objects.map((object, index) => ({ source: `object ${index + 1}`, object }))),
        ),
      ),
    )
}
