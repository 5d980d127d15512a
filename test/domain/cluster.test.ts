import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { loadYaml } from "@kubernetes/client-node"
import { Either } from "effect"
import {
  archiveStanzaRef,
  type Cluster,
  decodeCluster,
  decodeClusterDefinition,
} from "../../src/domain/cluster.js"

const cluster = (input: unknown): Cluster => {
  const result = decodeCluster(input)
  if (Either.isLeft(result)) {
    assert.fail(result.left.message)
  }
  return result.right
}

describe("Cluster decoding", () => {
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
