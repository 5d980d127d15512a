import { Either, Schema } from "effect"
import type { Cluster } from "./cluster.js"
import { clusterNamespace } from "./cluster.js"
import { PLUGIN_NAME } from "./plugin.js"
import type { Stanza } from "./stanza.js"
import { secretUses } from "./stanzaEnv.js"

/**
 * The Role and RoleBinding `<cluster>-pgbackrest` that let a Cluster's pods (its service account,
 * which CloudNativePG names after the Cluster) read exactly the Stanzas and Secrets they need.
 * Everything is sorted and deduplicated, so an unchanged input builds an identical object and the
 * reconciler writes nothing.
 */

const RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"
const STANZA_GROUP = "pgbackrest.dalibo.com"

/** The Cluster's apiVersion and kind, when the request carried them (a fork may use another group). */
export interface ClusterTypeMeta {
  readonly apiVersion?: string | undefined
  readonly kind?: string | undefined
}

/** A Cluster as decoded, plus its type, for owner references. */
export type OwningCluster = Cluster & ClusterTypeMeta

export interface PolicyRule {
  readonly apiGroups: ReadonlyArray<string>
  readonly resources: ReadonlyArray<string>
  readonly verbs: ReadonlyArray<string>
  readonly resourceNames: ReadonlyArray<string>
}

export interface OwnerReference {
  readonly apiVersion: string
  readonly kind: string
  readonly name: string
  readonly uid: string
  readonly controller: true
}

export interface RbacMetadata {
  readonly name: string
  readonly namespace: string
  readonly labels: Readonly<Record<string, string>>
  readonly ownerReferences?: ReadonlyArray<OwnerReference>
  /** Kept from the existing object on a replace. */
  readonly annotations?: Readonly<Record<string, string>>
  readonly resourceVersion?: string
}

export interface Role {
  readonly apiVersion: typeof RBAC_API_VERSION
  readonly kind: "Role"
  readonly metadata: RbacMetadata
  readonly rules: ReadonlyArray<PolicyRule>
}

export interface RoleRef {
  readonly apiGroup: string
  readonly kind: string
  readonly name: string
}

export interface Subject {
  readonly kind: string
  readonly name: string
  readonly namespace: string
}

export interface RoleBinding {
  readonly apiVersion: typeof RBAC_API_VERSION
  readonly kind: "RoleBinding"
  readonly metadata: RbacMetadata
  readonly roleRef: RoleRef
  readonly subjects: ReadonlyArray<Subject>
}

/** `<cluster>-pgbackrest`: the name of both the Role and the RoleBinding. */
export const rbacName = (cluster: Cluster): string => `${cluster.metadata.name}-pgbackrest`

const sortedUnique = (values: Iterable<string>): ReadonlyArray<string> => [...new Set(values)].sort()

const metadataFor = (cluster: OwningCluster): RbacMetadata => {
  const base = {
    name: rbacName(cluster),
    namespace: clusterNamespace(cluster),
    labels: { "app.kubernetes.io/managed-by": PLUGIN_NAME, "cnpg.io/cluster": cluster.metadata.name },
  }
  // The operator always sends the uid; without one no owner reference can be valid, and the API
  // server would reject the whole object.
  const uid = cluster.metadata.uid
  return uid === undefined || uid === ""
    ? base
    : {
        ...base,
        ownerReferences: [
          {
            apiVersion: cluster.apiVersion ?? "postgresql.cnpg.io/v1",
            kind: cluster.kind ?? "Cluster",
            name: cluster.metadata.name,
            uid,
            controller: true,
          },
        ],
      }
}

/**
 * The Role for a Cluster and the Stanzas it references. A rule is only emitted with names in it:
 * RBAC reads an empty `resourceNames` as "every object", which would hand out every Secret of the
 * namespace to a Stanza that uses none (IRSA, instance profiles).
 */
export const roleFor = (cluster: OwningCluster, stanzas: ReadonlyArray<Stanza>): Role => {
  const stanzaNames = sortedUnique(stanzas.map((stanza) => stanza.metadata.name))
  const secretNames = sortedUnique(
    stanzas.flatMap((stanza) => secretUses(stanza.spec.stanzaConfiguration).map((use) => use.ref.name)),
  )
  const rules: Array<PolicyRule> = []
  if (stanzaNames.length > 0) {
    rules.push(
      {
        apiGroups: [STANZA_GROUP],
        resources: ["stanzas"],
        verbs: ["get", "list", "watch"],
        resourceNames: stanzaNames,
      },
      {
        apiGroups: [STANZA_GROUP],
        resources: ["stanzas/status"],
        verbs: ["patch", "update"],
        resourceNames: stanzaNames,
      },
    )
  }
  if (secretNames.length > 0) {
    rules.push({
      apiGroups: [""],
      resources: ["secrets"],
      verbs: ["get", "list", "watch"],
      resourceNames: secretNames,
    })
  }
  return { apiVersion: RBAC_API_VERSION, kind: "Role", metadata: metadataFor(cluster), rules }
}

/**
 * The service account the Cluster's pods and Jobs run as (CloudNativePG's `GetServiceAccountName`):
 * `spec.serviceAccountName` when set (1.29+, possibly shared by several Clusters), else the Cluster's name.
 */
export const serviceAccountOf = (cluster: Cluster): string =>
  cluster.spec.serviceAccountName ?? cluster.metadata.name

/** The RoleBinding giving the Role to the service account the Cluster's pods run as. */
export const roleBindingFor = (cluster: OwningCluster): RoleBinding => ({
  apiVersion: RBAC_API_VERSION,
  kind: "RoleBinding",
  metadata: metadataFor(cluster),
  roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: rbacName(cluster) },
  subjects: [
    { kind: "ServiceAccount", name: serviceAccountOf(cluster), namespace: clusterNamespace(cluster) },
  ],
})

// What the API server returns, read leniently: it omits empty lists and adds fields of its own.
const Strings = Schema.optional(Schema.NullOr(Schema.Array(Schema.String)))
const ExistingRule = Schema.Struct({
  apiGroups: Strings,
  resources: Strings,
  verbs: Strings,
  resourceNames: Strings,
  nonResourceURLs: Strings,
})
const ExistingRole = Schema.Struct({ rules: Schema.optional(Schema.NullOr(Schema.Array(ExistingRule))) })
const ExistingRoleRef = Schema.Struct({ apiGroup: Schema.String, kind: Schema.String, name: Schema.String })
const ExistingBinding = Schema.Struct({
  roleRef: Schema.optional(ExistingRoleRef),
  subjects: Schema.optional(
    Schema.NullOr(
      Schema.Array(
        Schema.Struct({
          kind: Schema.String,
          apiGroup: Schema.optional(Schema.String),
          name: Schema.String,
          namespace: Schema.optional(Schema.String),
        }),
      ),
    ),
  ),
})
const ExistingMetadata = Schema.Struct({
  metadata: Schema.Struct({
    resourceVersion: Schema.optional(Schema.String),
    labels: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String }))),
    annotations: Schema.optional(Schema.NullOr(Schema.Record({ key: Schema.String, value: Schema.String }))),
  }),
})

const lenient = { onExcessProperty: "ignore" } as const

const canonicalRules = (rules: ReadonlyArray<typeof ExistingRule.Type>): string =>
  JSON.stringify(
    rules.map((rule) => [
      rule.apiGroups ?? [],
      rule.resources ?? [],
      rule.verbs ?? [],
      rule.resourceNames ?? [],
      rule.nonResourceURLs ?? [],
    ]),
  )

/** Whether an existing Role's rules differ from the wanted ones (an unreadable Role differs). */
export const roleDiffers = (existing: unknown, wanted: Role): boolean =>
  Either.match(Schema.decodeUnknownEither(ExistingRole, lenient)(existing), {
    onLeft: () => true,
    onRight: (role) => canonicalRules(role.rules ?? []) !== canonicalRules(wanted.rules),
  })

const canonicalSubjects = (
  subjects: ReadonlyArray<{
    readonly kind: string
    readonly name: string
    readonly namespace?: string | undefined
  }>,
) => JSON.stringify(subjects.map((subject) => [subject.kind, subject.name, subject.namespace ?? ""]))

/** Whether an existing RoleBinding's subjects or roleRef differ from the wanted ones. */
export const roleBindingDiffers = (existing: unknown, wanted: RoleBinding): boolean =>
  Either.match(Schema.decodeUnknownEither(ExistingBinding, lenient)(existing), {
    onLeft: () => true,
    onRight: (binding) =>
      canonicalSubjects(binding.subjects ?? []) !== canonicalSubjects(wanted.subjects) ||
      JSON.stringify(binding.roleRef ?? null) !== JSON.stringify(wanted.roleRef),
  })

/**
 * The Role an existing RoleBinding points at, when it is not the wanted one. `roleRef` is immutable in
 * Kubernetes: such a binding cannot be updated, only deleted and created again.
 */
export const foreignRoleRef = (existing: unknown, wanted: RoleBinding): RoleRef | undefined =>
  Either.match(Schema.decodeUnknownEither(ExistingBinding, lenient)(existing), {
    onLeft: () => undefined,
    onRight: (binding) =>
      binding.roleRef === undefined || JSON.stringify(binding.roleRef) === JSON.stringify(wanted.roleRef)
        ? undefined
        : binding.roleRef,
  })

/**
 * The body of a replace (PUT) of `existing` by `wanted`: the wanted object with the existing
 * resourceVersion (so a concurrent write is a conflict, not lost), labels merged, annotations kept.
 */
export const replacementOf = <A extends Role | RoleBinding>(existing: unknown, wanted: A): A => {
  const found = Schema.decodeUnknownEither(ExistingMetadata, lenient)(existing)
  if (Either.isLeft(found)) {
    return wanted
  }
  const { resourceVersion, labels, annotations } = found.right.metadata
  return {
    ...wanted,
    metadata: {
      ...wanted.metadata,
      labels: { ...labels, ...wanted.metadata.labels },
      ...(annotations === undefined || annotations === null ? {} : { annotations }),
      ...(resourceVersion === undefined ? {} : { resourceVersion }),
    },
  }
}
