import { Context, type Effect, ParseResult } from "effect"
import type {
  FailedPrecondition,
  InvalidRequest,
  NotFound,
  PermissionDenied,
  Unavailable,
} from "../domain/errors.js"

/**
 * Where a kind of object lives in the Kubernetes API. `group` "" is the core group (`/api/v1`).
 * `kind` only makes messages read like kubectl ("Stanza db/stanza-sample"); the plural is used without it.
 */
export interface ResourceRef {
  readonly group: string
  readonly version: string
  readonly plural: string
  readonly kind?: string
}

/** The resources the plugin reads or writes. */
export const Resources = {
  cluster: { group: "postgresql.cnpg.io", version: "v1", plural: "clusters", kind: "Cluster" },
  stanza: { group: "pgbackrest.dalibo.com", version: "v1", plural: "stanzas", kind: "Stanza" },
  secret: { group: "", version: "v1", plural: "secrets", kind: "Secret" },
  role: { group: "rbac.authorization.k8s.io", version: "v1", plural: "roles", kind: "Role" },
  roleBinding: {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "rolebindings",
    kind: "RoleBinding",
  },
} satisfies Record<string, ResourceRef>

/** Failures of a read: the object is absent, RBAC refused, the request was rejected, or the API is away. */
export type ReadError = NotFound | PermissionDenied | InvalidRequest | Unavailable

/** Failures of a write: those of a read, plus a conflict (already exists, stale resourceVersion). */
export type WriteError = ReadError | FailedPrecondition

/** `Stanza db/stanza-sample`: an object as messages name it. */
export const describeObject = (resource: ResourceRef, namespace: string, name: string): string =>
  `${resource.kind ?? resource.plural} ${namespace}/${name}`

/** `secrets`, `stanzas.pgbackrest.dalibo.com`: the resource as RBAC rules and kubectl name it. */
export const qualifiedResource = (resource: ResourceRef): string =>
  resource.group === "" ? resource.plural : `${resource.plural}.${resource.group}`

/** `/apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>[/<subresource>]]` (`/api/v1/...` for core). */
export const resourcePath = (
  resource: ResourceRef,
  namespace: string,
  name?: string,
  subresource?: string,
): string => {
  const root =
    resource.group === "" ? `/api/${resource.version}` : `/apis/${resource.group}/${resource.version}`
  const segments = [root, "namespaces", encodeURIComponent(namespace), resource.plural]
  if (name !== undefined) {
    segments.push(encodeURIComponent(name))
  }
  if (subresource !== undefined) {
    segments.push(subresource)
  }
  return segments.join("/")
}

/**
 * Kubernetes' own guess from a kind to its plural (`UnsafeGuessKindToResource`): right for every kind
 * the plugin handles (Secret, Stanza, Cluster, Role, RoleBinding, Backup, ScheduledBackup).
 */
export const guessPlural = (kind: string): string => {
  const lower = kind.toLowerCase()
  if (lower.endsWith("s")) {
    return `${lower}es`
  }
  if (lower.endsWith("y")) {
    return `${lower.slice(0, -1)}ies`
  }
  return `${lower}s`
}

/**
 * What is wrong with a value that failed to decode, by path only: a ParseError's own message quotes the
 * actual value, which for a Secret would be its data.
 */
export const decodeProblem = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const first = issues[0]
  if (first === undefined) {
    return "unexpected shape"
  }
  const where = first.path.length === 0 ? "(root)" : first.path.map(String).join(".")
  const what = first._tag === "Missing" ? "is missing" : "has an unexpected value"
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : ""
  return `${where} ${what}${more}`
}

/**
 * The four verbs the plugin needs, over raw JSON. The API server, a directory of manifests and an
 * in-memory fake each implement them; `Kubernetes` builds its typed methods on top.
 */
export interface KubernetesBackendShape {
  readonly get: (resource: ResourceRef, namespace: string, name: string) => Effect.Effect<unknown, ReadError>
  readonly create: (
    resource: ResourceRef,
    namespace: string,
    body: unknown,
  ) => Effect.Effect<unknown, WriteError>
  readonly replace: (
    resource: ResourceRef,
    namespace: string,
    name: string,
    body: unknown,
  ) => Effect.Effect<unknown, WriteError>
  /** JSON merge patch of `{ status }` on the status subresource. */
  readonly patchStatus: (
    resource: ResourceRef,
    namespace: string,
    name: string,
    status: unknown,
  ) => Effect.Effect<unknown, WriteError>
}

export class KubernetesBackend extends Context.Tag("cnpg-pgbackrest/KubernetesBackend")<
  KubernetesBackend,
  KubernetesBackendShape
>() {}
