import { readFileSync } from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { loadYaml } from "@kubernetes/client-node"
import { Effect, Layer, Option, Schema } from "effect"
import { Status } from "nice-grpc"
import { Kubernetes, Resources } from "../../src/adapters/kubernetes.js"
import {
  dialPluginService,
  lifecycleHook,
  NETWORK_CALL_TIMEOUT_MS,
  pluginServiceOf,
  reconcilerHook,
  setStatusInCluster,
} from "../../src/cnpg/operator.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { PluginCapability_Service_Type } from "../../src/generated/identity.js"
import { OperatorOperationType_Type } from "../../src/generated/operator_lifecycle.js"
import { ReconcilerHooksCapability_Kind } from "../../src/generated/reconciler.js"
import { Identity, ServedCapabilities } from "../../src/grpc/identity.js"
import { OPERATOR_CAPABILITIES, OperatorServerLive } from "../../src/operator/layer.js"
import { Operator } from "../../src/operator/operator.js"
import { Lifecycle, SidecarSettings } from "../../src/operator/operatorLifecycle.js"
import { Reconciler, STANZA_REQUEUE_AFTER_SECONDS } from "../../src/operator/reconcilerHooks.js"
import { freePort } from "../rig/exec.js"
import { PROJECT_ROOT } from "../rig/paths.js"
import { issue, makeCa } from "../support/certificates.js"
import { fakeApiServer, kubeConfigFor } from "../support/fakeApiServer.js"
import { clusterObject, stanzaObject } from "../support/pluginObjects.js"
import { tempDir } from "../support/tempDir.js"

const PodInitContainers = Schema.Struct({
  spec: Schema.Struct({
    initContainers: Schema.Array(Schema.Struct({ name: Schema.String, image: Schema.String })),
  }),
})

const fixture = (name: string) =>
  Effect.promise(
    async () => JSON.parse(await fs.readFile(path.join("test/fixtures/cnpg", name), "utf8")) as unknown,
  )

const ShippedService = Schema.Struct({
  metadata: Schema.Struct({
    name: Schema.String,
    labels: Schema.Record({ key: Schema.String, value: Schema.String }),
    annotations: Schema.Record({ key: Schema.String, value: Schema.String }),
  }),
})

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
  // CloudNativePG's side: the Service as the manifests ship it (the test's certificate names localhost,
  // hence the server-name annotation), its two Secrets, mutual TLS 1.3, LoadPlugin.
  const shipped = Schema.decodeUnknownSync(ShippedService)(
    loadYaml(readFileSync(path.join(PROJECT_ROOT, "kubernetes/service.yaml"), "utf8")),
  )
  const service = yield* Effect.orDie(
    pluginServiceOf(
      {
        metadata: {
          ...shipped.metadata,
          namespace: "cnpg-system",
          annotations: { ...shipped.metadata.annotations, "cnpg.io/pluginServerName": "localhost" },
        },
      },
      "cnpg-system",
    ),
  )
  const secrets = yield* Effect.promise(async () => ({
    serverCertificate: await fs.readFile(server.cert),
    clientCertificate: await fs.readFile(client.cert),
    clientKey: await fs.readFile(client.key),
  }))
  const plugin = yield* Effect.orDie(dialPluginService(service, secrets, `127.0.0.1:${port}`))
  return { api, plugin, service, secrets, address: `127.0.0.1:${port}` }
})

describe("the operator role over mutual TLS", () => {
  it.scopedLive("advertises and serves lifecycle, reconciler and operator services", () =>
    Effect.gen(function* () {
      const { api, plugin, service } = yield* startOperator
      assert.strictEqual(service.address, "pgbackrest.cnpg-system.svc:9090")
      assert.strictEqual(plugin.name, PLUGIN_NAME)
      assert.sameMembers(
        [...plugin.services],
        [
          PluginCapability_Service_Type.TYPE_LIFECYCLE_SERVICE,
          PluginCapability_Service_Type.TYPE_INSTANCE_SIDECAR_INJECTION,
          PluginCapability_Service_Type.TYPE_RECONCILER_HOOKS,
          PluginCapability_Service_Type.TYPE_OPERATOR_SERVICE,
        ],
      )
      assert.strictEqual(plugin.callTimeoutMs, NETWORK_CALL_TIMEOUT_MS)

      // Pod CREATE: the patch adds the sidecar; the patched Pod, evaluated again, is left as it is.
      const cluster = yield* fixture("cluster-demo.json")
      const pod = yield* fixture("pod-cluster-demo-1.json")
      const hook = (object: unknown, type: OperatorOperationType_Type) =>
        lifecycleHook([plugin], type, cluster, object)
      const patched = yield* hook(pod, OperatorOperationType_Type.TYPE_CREATE)
      const sidecars = Schema.decodeUnknownSync(PodInitContainers)(patched).spec.initContainers
      assert.deepInclude(
        sidecars.map((container) => [container.name, container.image]),
        ["pgbackrest-plugin", "cnpg-plugin-pgbackrest:test"],
      )
      assert.deepStrictEqual(yield* hook(patched, OperatorOperationType_Type.TYPE_EVALUATE), patched)
      // A Job the plugin does not handle (DELETE is not among its capabilities) is not even sent.
      assert.deepStrictEqual(yield* hook(pod, OperatorOperationType_Type.TYPE_DELETE), pod)

      // Latency of LifecycleHook as the operator sees it, Probe included (reported, not asserted).
      const latencies: Array<number> = []
      for (let i = 0; i < 1000; i++) {
        const started = performance.now()
        yield* hook(pod, OperatorOperationType_Type.TYPE_EVALUATE)
        latencies.push(performance.now() - started)
      }
      latencies.sort((a, b) => a - b)
      console.log(
        `LifecycleHook over mTLS, 1000 calls: p50 ${latencies[500]?.toFixed(2)} ms, p99 ${latencies[990]?.toFixed(2)} ms`,
      )

      // Reconciler Pre for the Cluster: the Role and RoleBinding appear in the API.
      const demo = clusterObject({ stanzaRef: "stanza-sample" })
      const pre = yield* reconcilerHook(
        [plugin],
        "pre",
        ReconcilerHooksCapability_Kind.KIND_CLUSTER,
        demo,
        demo,
      )
      assert.deepStrictEqual(pre, { _tag: "Continue" })
      assert.isTrue(Option.isSome(yield* api.object(Resources.role, "db", "pg-pgbackrest")))
      assert.isTrue(Option.isSome(yield* api.object(Resources.roleBinding, "db", "pg-pgbackrest")))
      assert.isTrue(Option.isNone(yield* api.object(Resources.role, "db", "other-pgbackrest")))
      // A missing Stanza stops the reconcile and asks for it again later.
      const missing = clusterObject({ stanzaRef: "no-such-stanza" })
      const requeued = yield* reconcilerHook(
        [plugin],
        "pre",
        ReconcilerHooksCapability_Kind.KIND_CLUSTER,
        missing,
        missing,
      )
      assert.deepStrictEqual(requeued, { _tag: "Requeue", afterSeconds: STANZA_REQUEUE_AFTER_SECONDS })

      // SetStatusInCluster reports the Stanza.
      const statuses = yield* setStatusInCluster([plugin], demo)
      assert.deepInclude(JSON.parse(statuses.get(PLUGIN_NAME) ?? "{}").stanzas, {
        name: "stanza-sample",
        namespace: "db",
        stanza: "main",
        repositories: 1,
      })
    }).pipe(Effect.provide(NodeContext.layer)),
  )

  it.scopedLive(
    "CloudNativePG refuses a server whose certificate is not the Secret's, or names another host",
    () =>
      Effect.gen(function* () {
        const { service, secrets: good, address } = yield* startOperator
        const dir = yield* tempDir()
        const otherCa = yield* makeCa(dir, "other")
        const stranger = yield* issue(dir, otherCa, "stranger", "server")
        const secrets = yield* Effect.promise(async () => ({
          serverCertificate: await fs.readFile(stranger.cert),
          clientCertificate: await fs.readFile(stranger.cert),
          clientKey: await fs.readFile(stranger.key),
        }))
        // Another server certificate in the Secret (and a client the plugin does not know).
        const error = yield* Effect.flip(dialPluginService(service, secrets, address))
        assert.strictEqual(error.code, Status.UNAVAILABLE)
        // The right Secrets, but the certificate does not name the Service (no server-name annotation).
        const misnamed = yield* Effect.flip(
          dialPluginService({ ...service, serverName: "pgbackrest" }, good, address),
        )
        assert.strictEqual(misnamed.code, Status.UNAVAILABLE)
      }).pipe(Effect.provide(NodeContext.layer)),
  )
})
