import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { type Cluster, decodeCluster } from "../../src/domain/cluster.js"
import { referencedStanzas, usesPlugin } from "../../src/domain/clusterStanzas.js"
import {
  foreignRoleRef,
  replacementOf,
  roleBindingDiffers,
  roleBindingFor,
  roleDiffers,
  roleFor,
} from "../../src/domain/rbac.js"
import { decodeStanza, type Stanza } from "../../src/domain/stanza.js"

const cluster = (spec: unknown, metadata: object = {}): Cluster => {
  const decoded = decodeCluster({
    metadata: { name: "pg", namespace: "db", uid: "uid-1", ...metadata },
    spec,
  })
  return Either.getOrThrowWith(decoded, (error) => new Error(error.message))
}

const ref = (name: string, key: string) => ({ name, key })

const stanza = (name: string, s3: ReadonlyArray<object>, posix: ReadonlyArray<object> = []): Stanza =>
  Either.getOrThrowWith(
    decodeStanza({
      metadata: { name, namespace: "db" },
      spec: {
        stanzaConfiguration: {
          name: `${name}-main`,
          s3Repositories: s3.map((extra) => ({
            bucket: "b",
            endpoint: "s3.example",
            region: "r",
            repoPath: "/repo",
            ...extra,
          })),
          posixRepositories: posix.map((extra) => ({ repoPath: "/nfs", ...extra })),
        },
      },
    }),
    (error) => new Error(error.message),
  )

const keys = (secret: string) => ({
  secretRef: { accessKeyId: ref(secret, "id"), secretAccessKey: ref(secret, "secret") },
})

const pg = cluster({
  plugins: [{ name: "pgbackrest.dalibo.com", parameters: { stanzaRef: "zeta" } }],
  externalClusters: [
    { name: "origin", plugin: { name: "pgbackrest.dalibo.com", parameters: { stanzaRef: "alpha" } } },
    {
      name: "other",
      plugin: { name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: "x" } },
    },
    { name: "again", plugin: { name: "pgbackrest.dalibo.com", parameters: { stanzaRef: "zeta" } } },
  ],
})

const stanzas = [
  stanza(
    "zeta",
    [keys("s3-b"), { ...keys("s3-a"), endpointCA: ref("ca", "ca.crt") }],
    [{ cipherConfig: { encryptionPass: ref("cipher", "pass") } }],
  ),
  stanza("alpha", [keys("s3-a")]),
  stanza("zeta", [keys("s3-b")]),
]

describe("Stanzas a Cluster references", () => {
  it("takes its own stanzaRef, then external clusters of this plugin, each name once", () => {
    assert.deepStrictEqual(referencedStanzas(pg), [
      {
        name: "zeta",
        fields: [
          "spec.plugins[0].parameters.stanzaRef",
          "spec.externalClusters[2].plugin.parameters.stanzaRef",
        ],
      },
      { name: "alpha", fields: ["spec.externalClusters[0].plugin.parameters.stanzaRef"] },
    ])
    assert.isTrue(usesPlugin(pg))
  })

  it("ignores a disabled entry and other plugins", () => {
    const other = cluster({
      plugins: [
        { name: "pgbackrest.dalibo.com", enabled: false, parameters: { stanzaRef: "s" } },
        { name: "barman-cloud.cloudnative-pg.io", parameters: { stanzaRef: "s" } },
      ],
    })
    assert.deepStrictEqual(referencedStanzas(other), [])
    assert.isFalse(usesPlugin(other))
  })
})

describe("the Role of a Cluster", () => {
  const role = roleFor({ ...pg, apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster" }, stanzas)

  it("grants exactly the referenced Stanzas and Secrets, sorted and deduplicated", () => {
    assert.deepStrictEqual(role.rules, [
      {
        apiGroups: ["pgbackrest.dalibo.com"],
        resources: ["stanzas"],
        verbs: ["get", "list", "watch"],
        resourceNames: ["alpha", "zeta"],
      },
      {
        apiGroups: ["pgbackrest.dalibo.com"],
        resources: ["stanzas/status"],
        verbs: ["patch", "update"],
        resourceNames: ["alpha", "zeta"],
      },
      {
        apiGroups: [""],
        resources: ["secrets"],
        verbs: ["get", "list", "watch"],
        resourceNames: ["ca", "cipher", "s3-a", "s3-b"],
      },
    ])
    assert.deepStrictEqual(roleFor(pg, [...stanzas].reverse()).rules, role.rules)
  })

  it("is named after the Cluster and owned by it", () => {
    assert.deepStrictEqual(role.metadata.name, "pg-pgbackrest")
    assert.deepStrictEqual(role.metadata.namespace, "db")
    assert.deepStrictEqual(role.metadata.ownerReferences, [
      { apiVersion: "postgresql.cnpg.io/v1", kind: "Cluster", name: "pg", uid: "uid-1", controller: true },
    ])
    const fork = roleFor({ ...pg, apiVersion: "postgresql.example.com/v1" }, stanzas)
    assert.strictEqual(fork.metadata.ownerReferences?.[0]?.apiVersion, "postgresql.example.com/v1")
  })

  it("never emits a rule without names, which RBAC would read as every object", () => {
    const noSecrets = roleFor(pg, [stanza("irsa", [{}])])
    assert.deepStrictEqual(
      noSecrets.rules.map((rule) => rule.resources[0]),
      ["stanzas", "stanzas/status"],
    )
    assert.deepStrictEqual(roleFor(pg, []).rules, [])
  })

  it("binds the Role to the Cluster's service account", () => {
    const binding = roleBindingFor(pg)
    assert.strictEqual(binding.metadata.name, "pg-pgbackrest")
    assert.deepStrictEqual(binding.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: "pg-pgbackrest",
    })
    assert.deepStrictEqual(binding.subjects, [{ kind: "ServiceAccount", name: "pg", namespace: "db" }])
    assert.strictEqual(binding.metadata.ownerReferences?.[0]?.uid, "uid-1")
  })

  it("binds spec.serviceAccountName instead when the Cluster sets one (CloudNativePG 1.29+)", () => {
    const shared = cluster({ ...pg.spec, serviceAccountName: "shared-postgres" })
    assert.deepStrictEqual(roleBindingFor(shared).subjects, [
      { kind: "ServiceAccount", name: "shared-postgres", namespace: "db" },
    ])
    assert.strictEqual(roleBindingFor(shared).metadata.name, "pg-pgbackrest")
    // An existing binding to the Cluster's name is out of date and gets replaced in place.
    assert.isTrue(roleBindingDiffers(roleBindingFor(pg), roleBindingFor(shared)))
  })
})

describe("comparing with what exists", () => {
  const role = roleFor(pg, stanzas)
  const binding = roleBindingFor(pg)
  // As the API server returns them: extra metadata, no empty lists, subjects without apiGroup.
  const stored = (object: object) => ({
    ...JSON.parse(JSON.stringify(object)),
    metadata: {
      name: "pg-pgbackrest",
      namespace: "db",
      resourceVersion: "7",
      uid: "x",
      labels: { team: "a" },
    },
  })

  it("an identical Role or RoleBinding does not differ", () => {
    assert.isFalse(roleDiffers(stored(role), role))
    assert.isFalse(roleBindingDiffers(stored(binding), binding))
    assert.isUndefined(foreignRoleRef(stored(binding), binding))
  })

  it("a changed Secret, an added Stanza, a changed subject or an unreadable object differs", () => {
    assert.isTrue(roleDiffers(stored(roleFor(pg, [stanza("zeta", [keys("other")])])), role))
    assert.isTrue(roleDiffers(stored(roleFor(pg, stanzas.slice(0, 1))), role))
    assert.isTrue(roleDiffers({ rules: "nope" }, role))
    assert.isTrue(roleBindingDiffers(stored({ ...binding, subjects: [] }), binding))
    assert.isTrue(
      roleBindingDiffers(
        stored({ ...binding, subjects: [{ kind: "ServiceAccount", name: "x", namespace: "db" }] }),
        binding,
      ),
    )
  })

  it("tells a binding to another Role, which cannot be updated", () => {
    const other = { ...binding, roleRef: { ...binding.roleRef, name: "admin" } }
    assert.isTrue(roleBindingDiffers(stored(other), binding))
    assert.deepStrictEqual(foreignRoleRef(stored(other), binding)?.name, "admin")
  })

  it("a replacement keeps the resourceVersion and foreign labels", () => {
    const body = replacementOf(stored(role), role)
    assert.deepStrictEqual(body.rules, role.rules)
    assert.deepStrictEqual(body.metadata, {
      ...role.metadata,
      labels: { team: "a", ...role.metadata.labels },
      resourceVersion: "7",
    })
  })
})
