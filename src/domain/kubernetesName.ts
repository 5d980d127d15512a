import { Schema } from "effect"

/**
 * An object name as the API server accepts it (RFC 1123 subdomain: lower-case letters, digits, '-'
 * and '.', at most 253 characters). Names from a request (a Cluster's, a `stanzaRef`) end up in API
 * paths and in pgBackRest's arguments: anything else is refused before it gets there.
 */
export const isObjectName = (value: string): boolean =>
  value.length <= 253 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(value)

/** A namespace name (RFC 1123 label: lower-case letters, digits and '-', at most 63 characters). */
export const isNamespaceName = (value: string): boolean =>
  value.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(value)

export const OBJECT_NAME_RULE = "must be a Kubernetes object name (lower-case letters, digits, '-' and '.')"

export const ObjectName = Schema.String.pipe(Schema.filter(isObjectName, { message: () => OBJECT_NAME_RULE }))

export const NamespaceName = Schema.String.pipe(
  Schema.filter(isNamespaceName, {
    message: () => "must be a Kubernetes namespace name (lower-case letters, digits and '-')",
  }),
)
