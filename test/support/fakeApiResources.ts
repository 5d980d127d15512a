import { Predicate } from "effect"

/** The vocabulary of the fake kube-apiserver: resource types, `kind: Status` bodies, merge patch. */

export type JsonObject = { [key: string]: unknown }

/** A resource type the fake serves. `statusSubresource`: writes to the object ignore `.status`. */
export interface ApiResourceType {
  readonly group: string
  readonly version: string
  readonly plural: string
  readonly kind: string
  readonly statusSubresource: boolean
}

export const defaultResourceTypes: ReadonlyArray<ApiResourceType> = [
  { group: "", version: "v1", plural: "secrets", kind: "Secret", statusSubresource: false },
  { group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", statusSubresource: false },
  { group: "", version: "v1", plural: "serviceaccounts", kind: "ServiceAccount", statusSubresource: false },
  {
    group: "postgresql.cnpg.io",
    version: "v1",
    plural: "clusters",
    kind: "Cluster",
    statusSubresource: true,
  },
  { group: "postgresql.cnpg.io", version: "v1", plural: "backups", kind: "Backup", statusSubresource: true },
  {
    group: "pgbackrest.dalibo.com",
    version: "v1",
    plural: "stanzas",
    kind: "Stanza",
    statusSubresource: true,
  },
  {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "roles",
    kind: "Role",
    statusSubresource: false,
  },
  {
    group: "rbac.authorization.k8s.io",
    version: "v1",
    plural: "rolebindings",
    kind: "RoleBinding",
    statusSubresource: false,
  },
]

export const apiVersionOf = (type: ApiResourceType): string =>
  type.group === "" ? type.version : `${type.group}/${type.version}`

/** `stanzas.pgbackrest.dalibo.com` / `secrets`, as the API server writes it in messages. */
export const qualified = (type: ApiResourceType): string =>
  type.group === "" ? type.plural : `${type.plural}.${type.group}`

export const storeKey = (type: ApiResourceType, namespace: string, name: string): string =>
  [type.group, type.version, type.plural, namespace, name].join("|")

export const metadataOf = (object: JsonObject): JsonObject =>
  Predicate.isRecord(object.metadata) ? { ...object.metadata } : {}

export const stringField = (object: JsonObject, field: string): string | undefined => {
  const value = object[field]
  return typeof value === "string" ? value : undefined
}

/** RFC 7386, written apart from the plugin's own so the fake checks the plugin rather than mirrors it. */
export const applyMergePatch = (target: unknown, patch: unknown): unknown => {
  if (!Predicate.isRecord(patch)) {
    return patch
  }
  const result: JsonObject = Predicate.isRecord(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      Reflect.deleteProperty(result, key)
    } else {
      result[key] = applyMergePatch(result[key], value)
    }
  }
  return result
}

/** A Secret as stored: `stringData` is folded into base64 `data` on write and never read back. */
export const normalizeSecret = (type: ApiResourceType, object: JsonObject): JsonObject => {
  if (type.kind !== "Secret" || !Predicate.isRecord(object.stringData)) {
    return object
  }
  const data: JsonObject = Predicate.isRecord(object.data) ? { ...object.data } : {}
  for (const [key, value] of Object.entries(object.stringData)) {
    data[key] = Buffer.from(String(value), "utf8").toString("base64")
  }
  const { stringData: _dropped, ...rest } = object
  return { ...rest, data }
}

/** A `kind: Status` failure body, as kube-apiserver sends with every error. */
export const statusBody = (
  code: number,
  reason: string,
  message: string,
  details?: { readonly name?: string; readonly group?: string; readonly kind?: string },
): JsonObject => ({
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message,
  reason,
  ...(details === undefined ? {} : { details }),
  code,
})

export const reasonOf = (code: number): string =>
  ({
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
  })[code] ?? "Unknown"

/** The verb RBAC checks for an HTTP method. */
export const verbOf = (method: string, hasName: boolean): string =>
  ({ GET: hasName ? "get" : "list", POST: "create", PUT: "update", PATCH: "patch", DELETE: "delete" })[
    method
  ] ?? method.toLowerCase()
