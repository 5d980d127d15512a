import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { OperatorCapability_RPC_Type } from "../../src/generated/operator.js"
import { Operator } from "../../src/operator/operator.js"
import { bytes, clusterObject, stanzaObject, withFakeApi } from "../support/pluginObjects.js"

const setup = withFakeApi(Operator, Operator.Default)

const statusOf = (operator: Operator, cluster: unknown) =>
  operator
    .setStatusInCluster({ cluster: bytes(cluster) })
    .pipe(Effect.map((response) => response.jsonStatus.toString("utf8")))

describe("Operator", () => {
  it.scopedLive("advertises SetStatusInCluster only; the other RPCs are neutral", () =>
    Effect.gen(function* () {
      const { service } = yield* setup
      const { capabilities } = yield* service.getCapabilities({})
      assert.deepStrictEqual(
        capabilities.map((capability) => capability.type?.value.type),
        [OperatorCapability_RPC_Type.TYPE_SET_STATUS_IN_CLUSTER],
      )
      const cluster = bytes(clusterObject())
      assert.deepStrictEqual(yield* service.validateClusterCreate({ definition: cluster }), {
        validationErrors: [],
      })
      assert.deepStrictEqual(
        yield* service.validateClusterChange({ oldCluster: cluster, newCluster: cluster }),
        {
          validationErrors: [],
        },
      )
      assert.strictEqual((yield* service.mutateCluster({ definition: cluster })).jsonPatch.length, 0)
      assert.deepStrictEqual(yield* service.deregister({ definition: cluster }), {})
    }),
  )

  it.scopedLive("SetStatusInCluster summarises every referenced Stanza; a missing one is in the status", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a", { stanza: "main", posix: 1 }))
      const status = JSON.parse(yield* statusOf(service, clusterObject({ origin: "gone" })))
      assert.deepStrictEqual(status, {
        stanzas: [
          { name: "stanza-a", namespace: "db", stanza: "main", repositories: 2 },
          { name: "gone", error: "not found" },
        ],
      })
    }),
  )

  it.scopedLive(
    "answers empty when CloudNativePG holds this status already, or was just given it (no 5 s requeue loop)",
    () =>
      Effect.gen(function* () {
        const { server, service } = yield* setup
        yield* server.seed(stanzaObject("stanza-a", { stanza: "main", posix: 1 }))
        const current = { stanzas: [{ name: "stanza-a", namespace: "db", stanza: "main", repositories: 2 }] }
        const withStored = (status: string | undefined) => ({
          ...clusterObject(),
          status: {
            pluginStatus: [
              { name: "other.plugin", status: "{}" },
              { name: PLUGIN_NAME, ...(status === undefined ? {} : { status }) },
            ],
          },
        })
        // Stored, with its keys in another order: nothing to patch.
        const reordered =
          '{"stanzas":[{"repositories":2,"stanza":"main","namespace":"db","name":"stanza-a"}]}'
        assert.strictEqual(yield* statusOf(service, withStored(reordered)), "")
        // Stored but stale: the new status.
        assert.deepStrictEqual(JSON.parse(yield* statusOf(service, withStored('{"stanzas":[]}'))), current)
        // Released CloudNativePG wipes what it stored before calling: the same answer is not repeated
        // at once, so the Cluster is not patched and requeued again.
        assert.strictEqual(yield* statusOf(service, withStored(undefined)), "")
        // A change is answered at once.
        yield* server.seed(stanzaObject("stanza-a", { stanza: "renamed", posix: 1 }))
        const changed = JSON.parse(yield* statusOf(service, withStored(undefined)))
        assert.strictEqual(changed.stanzas[0].stanza, "renamed")
        assert.strictEqual(yield* statusOf(service, withStored(undefined)), "")
      }),
  )

  it.scopedLive("an invalid Stanza or a refused read is reported in the status too", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      const broken = stanzaObject("stanza-a")
      yield* server.seed({ ...broken, spec: { stanzaConfiguration: { name: "main" } } })
      yield* server.failNext({
        path: "/apis/pgbackrest.dalibo.com/v1/namespaces/db/stanzas/origin",
        status: 403,
        times: 1,
      })
      const status = JSON.parse(yield* statusOf(service, clusterObject({ origin: "origin" })))
      assert.match(
        status.stanzas[0].error,
        /^Stanza db\/stanza-a spec\.stanzaConfiguration.*at least one repository/,
      )
      assert.match(status.stanzas[1].error, /^not allowed to get stanzas\.pgbackrest\.dalibo\.com\/origin/)
    }),
  )

  it.scopedLive("a Cluster that does not use the plugin gets an empty status and costs no request", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      assert.strictEqual(yield* statusOf(service, clusterObject({ plugin: false })), "")
      assert.deepStrictEqual(yield* server.requests, [])
    }),
  )

  it.scopedLive("an unreachable API server is an error, for CloudNativePG to retry", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.failNext({
        path: "/apis/pgbackrest.dalibo.com/v1/namespaces/db/stanzas/stanza-a",
        status: 503,
        times: 10,
      })
      const exit = yield* Effect.exit(statusOf(service, clusterObject()))
      assert.isTrue(
        Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "Unavailable",
      )
    }),
  )
})
