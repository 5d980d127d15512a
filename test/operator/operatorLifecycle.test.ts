import * as fs from "node:fs"
import { assert, describe, it, layer } from "@effect/vitest"
import { ConfigProvider, Effect, Layer } from "effect"
import { applyPatch, type Operation } from "fast-json-patch"
import { Status } from "nice-grpc"
import {
  OperatorLifecycleCapabilitiesResponse,
  OperatorLifecycleRequest,
  OperatorLifecycleResponse,
  OperatorOperationType_Type,
} from "../../src/generated/operator_lifecycle.js"
import { grpcStatusOf } from "../../src/grpc/status.js"
import { Lifecycle, SidecarSettings } from "../../src/operator/operatorLifecycle.js"

const IMAGE = "ghcr.io/dalibo/cnpg-plugin-pgbackrest:0.1.0"
const bytesOf = (name: string): Buffer => fs.readFileSync(`test/fixtures/cnpg/${name}.json`)

/** A request as it arrives on the wire: encoded by the operator, decoded by the generated code. */
const request = (
  type: OperatorOperationType_Type,
  clusterDefinition: Buffer,
  objectDefinition: Buffer,
): OperatorLifecycleRequest =>
  OperatorLifecycleRequest.decode(
    OperatorLifecycleRequest.encode({
      operationType: { type },
      clusterDefinition,
      objectDefinition,
    }).finish(),
  )

/** The patch in a response, after a round trip through the wire format. */
const patchIn = (response: OperatorLifecycleResponse): ReadonlyArray<Operation> => {
  const wire = OperatorLifecycleResponse.decode(OperatorLifecycleResponse.encode(response).finish())
  const parsed: unknown = JSON.parse(wire.jsonPatch.toString("utf8"))
  assert.isTrue(Array.isArray(parsed), "json_patch must be a JSON array")
  return Array.isArray(parsed) ? parsed : []
}

const TestLayer = Lifecycle.Default.pipe(
  Layer.provide(Layer.succeed(SidecarSettings, { image: IMAGE, logLevel: "info" })),
)

layer(TestLayer)("Lifecycle", (it) => {
  it.effect("advertises Pod CREATE and EVALUATE, and batch Job CREATE", () =>
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      const response = yield* lifecycle.getCapabilities({})
      const wire = OperatorLifecycleCapabilitiesResponse.decode(
        OperatorLifecycleCapabilitiesResponse.encode(response).finish(),
      )
      assert.deepStrictEqual(wire.lifecycleCapabilities, [
        {
          group: "",
          kind: "Pod",
          operationTypes: [
            { type: OperatorOperationType_Type.TYPE_CREATE },
            { type: OperatorOperationType_Type.TYPE_EVALUATE },
          ],
        },
        { group: "batch", kind: "Job", operationTypes: [{ type: OperatorOperationType_Type.TYPE_CREATE }] },
      ])
    }),
  )

  it.effect("returns a patch that applies to the Pod, then an empty one for the patched Pod", () =>
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      const cluster = bytesOf("cluster-demo")
      const pod = bytesOf("pod-cluster-demo-1")
      const patch = patchIn(
        yield* lifecycle.lifecycleHook(request(OperatorOperationType_Type.TYPE_EVALUATE, cluster, pod)),
      )
      assert.strictEqual(patch.length, 3)
      const patched = applyPatch(JSON.parse(pod.toString("utf8")), patch, true, false).newDocument
      const again = yield* lifecycle.lifecycleHook(
        request(OperatorOperationType_Type.TYPE_CREATE, cluster, Buffer.from(JSON.stringify(patched))),
      )
      assert.deepStrictEqual(patchIn(again), [])
    }),
  )

  it.effect("patches the full-recovery Job of a Cluster restored from a Stanza", () =>
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      const job = bytesOf("job-cluster-restored-1-full-recovery")
      const response = yield* lifecycle.lifecycleHook(
        request(OperatorOperationType_Type.TYPE_CREATE, bytesOf("cluster-restored"), job),
      )
      const paths = patchIn(response).map((operation) => operation.path)
      assert.deepStrictEqual(paths, [
        "/spec/template/spec/volumes/-",
        "/spec/template/spec/containers/0/volumeMounts/-",
        "/spec/template/spec/initContainers/-",
      ])
    }),
  )

  it.effect("answers [] for a Cluster that does not use the plugin", () =>
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      const response = yield* lifecycle.lifecycleHook(
        request(
          OperatorOperationType_Type.TYPE_CREATE,
          bytesOf("cluster-other"),
          bytesOf("pod-cluster-demo-1"),
        ),
      )
      assert.strictEqual(response.jsonPatch.toString("utf8"), "[]")
    }),
  )

  it.effect("rejects definitions that are not JSON, naming the field (INVALID_ARGUMENT)", () =>
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      const badObject = yield* lifecycle
        .lifecycleHook(
          request(OperatorOperationType_Type.TYPE_CREATE, bytesOf("cluster-demo"), Buffer.from("{not json")),
        )
        .pipe(Effect.flip)
      assert.strictEqual(badObject._tag, "InvalidRequest")
      assert.isTrue(badObject._tag === "InvalidRequest" && badObject.field === "object_definition")
      assert.strictEqual(grpcStatusOf(badObject).code, Status.INVALID_ARGUMENT)
      const badCluster = yield* lifecycle
        .lifecycleHook(
          request(OperatorOperationType_Type.TYPE_CREATE, Buffer.from(""), bytesOf("pod-cluster-demo-1")),
        )
        .pipe(Effect.flip)
      assert.isTrue(badCluster._tag === "InvalidRequest" && badCluster.field === "cluster_definition")
    }),
  )
})

describe("SidecarSettings.fromConfig", () => {
  const read = (env: Record<string, string>) =>
    SidecarSettings.pipe(
      Effect.provide(SidecarSettings.fromConfig),
      Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
    )

  it.effect("reads SIDECAR_IMAGE, with log level info unless SIDECAR_LOG_LEVEL says otherwise", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(yield* read({ SIDECAR_IMAGE: IMAGE }), { image: IMAGE, logLevel: "info" })
      const debug = yield* read({ SIDECAR_IMAGE: IMAGE, SIDECAR_LOG_LEVEL: "debug" })
      assert.strictEqual(debug.logLevel, "debug")
    }),
  )

  it.effect("fails to start without an image, or with an unknown log level", () =>
    Effect.gen(function* () {
      const missing = yield* read({}).pipe(Effect.flip)
      assert.include(String(missing), "SIDECAR_IMAGE")
      const empty = yield* read({ SIDECAR_IMAGE: "" }).pipe(Effect.flip)
      assert.include(String(empty), "SIDECAR_IMAGE")
      const level = yield* read({ SIDECAR_IMAGE: IMAGE, SIDECAR_LOG_LEVEL: "loud" }).pipe(Effect.flip)
      assert.include(String(level), "SIDECAR_LOG_LEVEL")
    }),
  )
})
