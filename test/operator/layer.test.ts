import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { ChannelCredentials } from "@grpc/grpc-js"
import { Effect, Layer, Option } from "effect"
import { applyPatch, type Operation } from "fast-json-patch"
import { type Channel, createChannel, createClient } from "nice-grpc"
import { Kubernetes, Resources } from "../../src/adapters/kubernetes.js"
import { IdentityDefinition, PluginCapability_Service_Type } from "../../src/generated/identity.js"
import { OperatorDefinition } from "../../src/generated/operator.js"
import {
  OperatorLifecycleDefinition,
  OperatorOperationType_Type,
} from "../../src/generated/operator_lifecycle.js"
import { ReconcilerHooksDefinition, ReconcilerHooksResult_Behavior } from "../../src/generated/reconciler.js"
import { Identity, ServedCapabilities } from "../../src/grpc/identity.js"
import { OPERATOR_CAPABILITIES, OperatorServerLive } from "../../src/operator/layer.js"
import { Operator } from "../../src/operator/operator.js"
import { Lifecycle, SidecarSettings } from "../../src/operator/operatorLifecycle.js"
import { Reconciler } from "../../src/operator/reconcilerHooks.js"
import { freePort } from "../rig/exec.js"
import { issue, makeCa } from "../support/certificates.js"
import { fakeApiServer, kubeConfigFor } from "../support/fakeApiServer.js"
import { bytes, clusterObject, stanzaObject } from "../support/pluginObjects.js"
import { tempDir } from "../support/tempDir.js"

const fixture = (name: string) =>
  Effect.promise(
    async () => JSON.parse(await fs.readFile(path.join("test/fixtures/cnpg", name), "utf8")) as unknown,
  )

/** The operator role as CloudNativePG reaches it: mutual TLS on TCP, the Kubernetes API behind it. */
const startOperator = Effect.gen(function* () {
  const dir = yield* tempDir()
  const ca = yield* makeCa(dir, "ca")
  const server = yield* issue(dir, ca, "server", "server")
  const client = yield* issue(dir, ca, "client", "client")
  const api = yield* fakeApiServer()
  yield* api.seed(stanzaObject("stanza-sample", { secret: "s3-creds" }), {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "s3-creds", namespace: "db" },
    stringData: { ACCESS_KEY_ID: "id", ACCESS_SECRET_KEY: "secret" },
  })
  const port = yield* freePort
  yield* Layer.build(
    OperatorServerLive({
      serverAddress: `127.0.0.1:${port}`,
      serverCert: server.cert,
      serverKey: server.key,
      clientCa: ca.cert,
    }).pipe(
      Layer.provide(
        Layer.mergeAll(
          Identity.Default.pipe(Layer.provide(Layer.succeed(ServedCapabilities, OPERATOR_CAPABILITIES))),
          Lifecycle.Default.pipe(
            Layer.provide(
              Layer.succeed(SidecarSettings, { image: "cnpg-plugin-pgbackrest:test", logLevel: "info" }),
            ),
          ),
          Reconciler.Default,
          Operator.Default,
        ),
      ),
      Layer.provide(Kubernetes.fromKubeConfig(kubeConfigFor(api))),
    ),
  )
  const channel: Channel = yield* Effect.acquireRelease(
    Effect.promise(async () =>
      createChannel(
        `127.0.0.1:${port}`,
        ChannelCredentials.createSsl(
          await fs.readFile(ca.cert),
          await fs.readFile(client.key),
          await fs.readFile(client.cert),
        ),
        { "grpc.ssl_target_name_override": "localhost" },
      ),
    ),
    (channel) => Effect.sync(() => channel.close()),
  )
  return { api, channel }
})

describe("the operator role over mutual TLS", () => {
  it.scopedLive("advertises and serves lifecycle, reconciler and operator services", () =>
    Effect.gen(function* () {
      const { api, channel } = yield* startOperator

      const identity = createClient(IdentityDefinition, channel)
      const { capabilities } = yield* Effect.promise(() => identity.getPluginCapabilities({}))
      const advertised = capabilities.map((capability) =>
        capability.type?.$case === "service" ? capability.type.value.type : -1,
      )
      assert.sameMembers(advertised, [
        PluginCapability_Service_Type.TYPE_LIFECYCLE_SERVICE,
        PluginCapability_Service_Type.TYPE_INSTANCE_SIDECAR_INJECTION,
        PluginCapability_Service_Type.TYPE_RECONCILER_HOOKS,
        PluginCapability_Service_Type.TYPE_OPERATOR_SERVICE,
      ])

      // Pod CREATE: the patch adds the sidecar; applied, then evaluated again, it asks for nothing more.
      const lifecycle = createClient(OperatorLifecycleDefinition, channel)
      const cluster = yield* fixture("cluster-demo.json")
      const pod = yield* fixture("pod-cluster-demo-1.json")
      const hook = (object: unknown, type: OperatorOperationType_Type) =>
        lifecycle.lifecycleHook({
          operationType: { type },
          clusterDefinition: bytes(cluster),
          objectDefinition: bytes(object),
        })
      const created = yield* Effect.promise(() => hook(pod, OperatorOperationType_Type.TYPE_CREATE))
      const operations: Array<Operation> = JSON.parse(created.jsonPatch.toString("utf8"))
      assert.isAbove(operations.length, 0)
      const patched = applyPatch(structuredClone(pod), operations, true, false).newDocument
      const sidecars = (patched as { spec: { initContainers: Array<{ name: string; image: string }> } }).spec
        .initContainers
      assert.deepInclude(
        sidecars.map((container) => [container.name, container.image]),
        ["pgbackrest-plugin", "cnpg-plugin-pgbackrest:test"],
      )
      const again = yield* Effect.promise(() => hook(patched, OperatorOperationType_Type.TYPE_EVALUATE))
      assert.deepStrictEqual(JSON.parse(again.jsonPatch.toString("utf8")), [])

      // Latency of LifecycleHook as the operator sees it (reported, not asserted).
      const latencies: Array<number> = []
      for (let i = 0; i < 1000; i++) {
        const started = performance.now()
        yield* Effect.promise(() => hook(pod, OperatorOperationType_Type.TYPE_EVALUATE))
        latencies.push(performance.now() - started)
      }
      latencies.sort((a, b) => a - b)
      console.log(
        `LifecycleHook over mTLS, 1000 calls: p50 ${latencies[500]?.toFixed(2)} ms, p99 ${latencies[990]?.toFixed(2)} ms`,
      )

      // Reconciler Pre for the Cluster: the Role and RoleBinding appear in the API.
      const reconciler = createClient(ReconcilerHooksDefinition, channel)
      const demo = clusterObject({ stanzaRef: "stanza-sample" })
      const pre = yield* Effect.promise(() =>
        reconciler.pre({ clusterDefinition: bytes(demo), resourceDefinition: bytes(demo) }),
      )
      assert.strictEqual(pre.behavior, ReconcilerHooksResult_Behavior.BEHAVIOR_CONTINUE)
      assert.isTrue(Option.isSome(yield* api.object(Resources.role, "db", "pg-pgbackrest")))
      assert.isTrue(Option.isSome(yield* api.object(Resources.roleBinding, "db", "pg-pgbackrest")))
      assert.isTrue(Option.isNone(yield* api.object(Resources.role, "db", "other-pgbackrest")))

      // SetStatusInCluster reports the Stanza.
      const operator = createClient(OperatorDefinition, channel)
      const status = yield* Effect.promise(() => operator.setStatusInCluster({ cluster: bytes(demo) }))
      assert.deepInclude(JSON.parse(status.jsonStatus.toString("utf8")).stanzas, {
        name: "stanza-sample",
        namespace: "db",
        stanza: "main",
        repositories: 1,
      })
    }).pipe(Effect.provide(NodeContext.layer)),
  )
})
