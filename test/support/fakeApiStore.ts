import { randomUUID } from "node:crypto"
import { Option, Predicate } from "effect"
import {
  type ApiResourceType,
  apiVersionOf,
  applyMergePatch,
  type JsonObject,
  metadataOf,
  normalizeSecret,
  qualified,
  reasonOf,
  statusBody,
  storeKey,
  stringField,
} from "./fakeApiResources.js"

/**
 * The object store behind the fake kube-apiserver, and what the real one does with a request once it
 * is authenticated: names are unique, resourceVersion moves on every write, a stale one is a conflict,
 * the status subresource splits writes to `.status` from writes to the rest.
 */

export interface Route {
  readonly type: ApiResourceType
  readonly namespace: string
  readonly name: string | undefined
  readonly subresource: string | undefined
}

export type Reply = { readonly status: number; readonly body: JsonObject | string }

export const parsePath = (path: string, types: ReadonlyArray<ApiResourceType>): Route | undefined => {
  const segments = path
    .split("/")
    .filter((s) => s !== "")
    .map(decodeURIComponent)
  const [group, version, rest] =
    segments[0] === "api"
      ? ["", segments[1], segments.slice(2)]
      : [segments[1], segments[2], segments.slice(3)]
  const [namespaces, namespace, plural, name, subresource, ...extra] = rest
  const type = types.find((t) => t.group === group && t.version === version && t.plural === plural)
  if (namespaces !== "namespaces" || namespace === undefined || type === undefined || extra.length > 0) {
    return undefined
  }
  return subresource === undefined || subresource === "status"
    ? { type, namespace, name, subresource }
    : undefined
}

export const failure = (
  code: number,
  message: string,
  details?: { name?: string; group?: string; kind?: string },
): Reply => ({
  status: code,
  body: statusBody(code, reasonOf(code), message, details),
})

export const makeObjectStore = (types: ReadonlyArray<ApiResourceType>) => {
  const store = new Map<string, JsonObject>()
  let revision = 100

  const stamp = (type: ApiResourceType, object: JsonObject, namespace: string, previous?: JsonObject) => {
    const before = previous === undefined ? {} : metadataOf(previous)
    revision += 1
    const metadata = {
      ...metadataOf(object),
      namespace,
      uid: before.uid ?? randomUUID(),
      creationTimestamp: before.creationTimestamp ?? new Date().toISOString(),
      resourceVersion: String(revision),
    }
    return normalizeSecret(type, { ...object, apiVersion: apiVersionOf(type), kind: type.kind, metadata })
  }

  const handle = (method: string, route: Route, body: unknown, contentType: string | undefined): Reply => {
    const { type, namespace, name, subresource } = route
    const details = { ...(name === undefined ? {} : { name }), group: type.group, kind: type.plural }
    const key = name === undefined ? undefined : storeKey(type, namespace, name)
    const current = key === undefined ? undefined : store.get(key)
    const notFound = () => failure(404, `${qualified(type)} "${name}" not found`, details)
    const conflict = () =>
      failure(
        409,
        `Operation cannot be fulfilled on ${qualified(type)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
        details,
      )
    if (method === "GET" && name === undefined) {
      const prefix = storeKey(type, namespace, "")
      const items = [...store.entries()].filter(([k]) => k.startsWith(prefix)).map(([, v]) => v)
      return { status: 200, body: { apiVersion: apiVersionOf(type), kind: `${type.kind}List`, items } }
    }
    if (method === "GET") {
      return current === undefined ? notFound() : { status: 200, body: current }
    }
    if (method === "DELETE") {
      if (key === undefined || current === undefined) {
        return notFound()
      }
      store.delete(key)
      return { status: 200, body: { kind: "Status", apiVersion: "v1", status: "Success", details } }
    }
    const mediaType = contentType?.split(";")[0]?.trim()
    if (method === "PATCH" && mediaType !== "application/merge-patch+json") {
      return failure(
        415,
        `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json (got ${String(contentType)})`,
      )
    }
    if (!Predicate.isRecord(body)) {
      return failure(400, "the request body must be a JSON object")
    }
    const bodyName = stringField(metadataOf(body), "name")
    const bodyVersion = stringField(metadataOf(body), "resourceVersion")
    const bodyNamespace = stringField(metadataOf(body), "namespace")
    if (bodyNamespace !== undefined && bodyNamespace !== namespace) {
      return failure(
        400,
        "the namespace of the provided object does not match the namespace sent on the request",
      )
    }
    if (method === "POST" && name === undefined) {
      if (bodyName === undefined) {
        return failure(422, `${type.kind} "" is invalid: metadata.name: Required value: name is required`)
      }
      if (stringField(body, "kind") !== type.kind || stringField(body, "apiVersion") !== apiVersionOf(type)) {
        return failure(400, `the object is not a ${type.kind} of ${apiVersionOf(type)}`)
      }
      const newKey = storeKey(type, namespace, bodyName)
      if (store.has(newKey)) {
        return failure(409, `${qualified(type)} "${bodyName}" already exists`, {
          ...details,
          name: bodyName,
        })
      }
      // With a status subresource, a create cannot set the status.
      const { status: _ignored, ...withoutStatus } = body
      const created = stamp(type, type.statusSubresource ? withoutStatus : body, namespace)
      store.set(newKey, created)
      return { status: 201, body: created }
    }
    if (key === undefined || (method !== "PUT" && method !== "PATCH")) {
      return failure(405, `${method} is not supported on this path`)
    }
    if (current === undefined) {
      return notFound()
    }
    if (bodyVersion !== undefined && bodyVersion !== stringField(metadataOf(current), "resourceVersion")) {
      return conflict()
    }
    let next: unknown
    if (method === "PUT") {
      if (bodyName !== name) {
        return failure(400, "the name of the object does not match the name on the URL")
      }
      next = body
    } else {
      next = applyMergePatch(current, body)
    }
    if (!Predicate.isRecord(next)) {
      return failure(400, "the result is not an object")
    }
    // The status subresource changes only .status; the object itself keeps its .status.
    const updated: JsonObject =
      subresource === "status"
        ? { ...current, status: next.status }
        : type.statusSubresource
          ? { ...next, status: current.status }
          : next
    const metadata = { ...metadataOf(updated), name }
    const stored = stamp(type, { ...updated, metadata }, namespace, current)
    store.set(key, stored)
    return { status: 200, body: stored }
  }

  /** Stores an object as `kubectl apply` would; no namespace means `default`. */
  const seed = (object: JsonObject): void => {
    const type = types.find(
      (t) => apiVersionOf(t) === stringField(object, "apiVersion") && t.kind === stringField(object, "kind"),
    )
    const meta = metadataOf(object)
    const name = stringField(meta, "name")
    if (type === undefined || name === undefined) {
      throw new Error(`fakeApiServer.seed: unknown type or no name in ${JSON.stringify(object)}`)
    }
    const namespace = stringField(meta, "namespace") ?? "default"
    store.set(storeKey(type, namespace, name), stamp(type, object, namespace))
  }

  const get = (
    ref: { readonly group: string; readonly plural: string },
    namespace: string,
    name: string,
  ): Option.Option<JsonObject> => {
    const type = types.find((t) => t.group === ref.group && t.plural === ref.plural)
    return Option.fromNullable(type === undefined ? undefined : store.get(storeKey(type, namespace, name)))
  }

  return { handle, seed, get }
}
