import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { loadYaml } from "@kubernetes/client-node"
import { Either } from "effect"
import {
  archiveStanzaRef,
  type Cluster,
  decodeCluster,
  decodeClusterDefinition,
  recoveryStanzaRef,
  walRestoreStanzaRef,
} from "../../src/domain/cluster.js"
import type { InvalidRequest } from "../../src/domain/errors.js"

const cluster = (input: unknown): Cluster => {
  const result = decodeCluster(input)
  if (Either.isLeft(result)) {
    assert.fail(result.left.message)
  }
  return result.right
}

describe("Cluster decoding", () => {
  it("refuses a name or namespace that is not a Kubernetes name, naming the field", () => {
    for (const [metadata, field] of [
      [{ name: "pg\u0000x" }, "metadata.name"],
      [{ name: "pg\nx" }, "metadata.name"],
      [{ name: "Cluster_1" }, "metadata.name"],
      [{ name: "c", namespace: "../kube-system" }, "metadata.namespace"],
    ] as const) {
      const result = decodeCluster({ metadata, spec: {} })
      assert.isTrue(Either.isLeft(result), JSON.stringify(metadata))
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left.field, `cluster.${field}`)
      }
    }
  })

  it("refuses a stanzaRef that is not an object name (it goes into an API path)", () => {
    const withRef = (stanzaRef: string) =>
      archiveStanzaRef(
        cluster({
          metadata: { name: "c" },
          spec: { plugins: [{ name: "pgbackrest.dalibo.com", parameters: { stanzaRef } }] },
        }),
      )
    assert.deepStrictEqual(withRef("stanza-1.a"), Either.right("stanza-1.a"))
    for (const bad of ["../secrets/x", "a/b", "UPPER", "x".repeat(254)]) {
      const result = withRef(bad)
      assert.isTrue(Either.isLeft(result), bad)
      if (Either.isLeft(result)) {
        assert.strictEqual(result.left.field, "spec.plugins[0].parameters.stanzaRef")
      }
    }
  })

  it("reads the documented example and finds its Stanza", () => {
    const demo = cluster(loadYaml<unknown>(fs.readFileSync("examples/cluster.yaml", "utf8")))
    assert.strictEqual(demo.metadata.name, "cluster-demo")
    assert.deepStrictEqual(archiveStanzaRef(demo), Either.right("stanza-sample"))
  })

  it("accepts what the operator sends: no apiVersion or kind, many unknown fields", () => {
    const bytes = new TextEncoder().encode(
      JSON.stringify({
        metadata: { name: "c", namespace: "db", uid: "u-1", managedFields: [{}] },
        spec: {
          instances: 3,
          postgresql: { parameters: { max_connections: "100" } },
          plugins: [
            { name: "barman-cloud.cloudnative-pg.io" },
            { name: "pgbackrest.dalibo.com", parameters: { stanzaRef: "s" } },
          ],
        },
        status: { phase: "Cluster in healthy state" },
      }),
    )
    const result = decodeClusterDefinition(bytes)
    assert.isTrue(Either.isRight(result))
    if (Either.isRight(result)) {
      assert.strictEqual(result.right.metadata.namespace, "db")
      assert.deepStrictEqual(archiveStanzaRef(result.right), Either.right("s"))
    }
  })

  it("rejects bytes that are not JSON, naming cluster_definition", () => {
    const result = decodeClusterDefinition(new TextEncoder().encode("{nope"))
    assert.isTrue(Either.isLeft(result) && result.left.field === "cluster_definition")
  })

  it("names the field when the plugin or its stanzaRef is missing, or the plugin is disabled", () => {
    const without = archiveStanzaRef(cluster({ metadata: { name: "c" }, spec: {} }))
    assert.isTrue(Either.isLeft(without) && without.left.field === "spec.plugins")
    const noRef = archiveStanzaRef(
      cluster({
        metadata: { name: "c" },
        spec: { plugins: [{ name: "x" }, { name: "pgbackrest.dalibo.com", parameters: {} }] },
      }),
    )
    assert.isTrue(Either.isLeft(noRef) && noRef.left.field === "spec.plugins[1].parameters.stanzaRef")
    const disabled = archiveStanzaRef(
      cluster({
        metadata: { name: "c" },
        spec: {
          plugins: [{ name: "pgbackrest.dalibo.com", enabled: false, parameters: { stanzaRef: "s" } }],
        },
      }),
    )
    assert.isTrue(Either.isLeft(disabled))
  })
})

describe("which Stanza WAL comes from", () => {
  const restored = (spec: Record<string, unknown>) =>
    cluster({
      metadata: { name: "cluster-restored" },
      spec: {
        plugins: [{ name: "pgbackrest.dalibo.com", parameters: { stanzaRef: "own" } }],
        externalClusters: [
          { name: "other", plugin: { name: "barman-cloud.cloudnative-pg.io", parameters: {} } },
          {
            name: "origin",
            plugin: { name: "pgbackrest.dalibo.com", parameters: { stanzaRef: "origin-stanza" } },
          },
        ],
        ...spec,
      },
    })

  it("the restore Job replays the recovery source's Stanza", () => {
    const c = restored({
      bootstrap: { recovery: { source: "origin", recoveryTarget: { targetTime: "2026-11-24 10:00:00+00" } } },
    })
    assert.deepStrictEqual(recoveryStanzaRef(c), Either.right("origin-stanza"))
    assert.deepStrictEqual(walRestoreStanzaRef(c, "restore"), Either.right("origin-stanza"))
    assert.strictEqual(c.spec.bootstrap?.recovery?.recoveryTarget?.targetTime, "2026-11-24 10:00:00+00")
  })

  it("an instance reads its own Stanza, or its replica source's in a replica cluster", () => {
    assert.deepStrictEqual(walRestoreStanzaRef(restored({}), "instance"), Either.right("own"))
    const replica = restored({ replica: { enabled: true, source: "origin" } })
    assert.deepStrictEqual(walRestoreStanzaRef(replica, "instance"), Either.right("origin-stanza"))
    const disabled = restored({ replica: { enabled: false, source: "origin" } })
    assert.deepStrictEqual(walRestoreStanzaRef(disabled, "instance"), Either.right("own"))
  })

  it("names the field when the source is missing, unknown, or not ours", () => {
    const field = (result: Either.Either<string, InvalidRequest>) =>
      Either.isLeft(result) ? result.left.field : "ok"
    assert.strictEqual(field(recoveryStanzaRef(restored({}))), "spec.bootstrap.recovery.source")
    assert.strictEqual(
      field(recoveryStanzaRef(restored({ bootstrap: { recovery: { source: "nope" } } }))),
      "spec.bootstrap.recovery.source",
    )
    assert.strictEqual(
      field(recoveryStanzaRef(restored({ bootstrap: { recovery: { source: "other" } } }))),
      "spec.externalClusters[0].plugin.name",
    )
  })
})
