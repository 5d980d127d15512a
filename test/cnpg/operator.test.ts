import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { loadPlugin, openChannel } from "../../src/cnpg/connection.js"
import {
  lifecycleHook,
  pluginServiceOf,
  reconcilerHook,
  setStatusInCluster,
} from "../../src/cnpg/operator.js"
import { PluginCapability_Service_Type as Service } from "../../src/generated/identity.js"
import { OperatorCapability_RPC_Type } from "../../src/generated/operator.js"
import { OperatorOperationType_Type as Op } from "../../src/generated/operator_lifecycle.js"
import {
  ReconcilerHooksResult_Behavior as Behavior,
  ReconcilerHooksCapability_Kind as Kind,
} from "../../src/generated/reconciler.js"
import { tempDir } from "../support/tempDir.js"
import { type FakePluginOptions, fakePlugin } from "./fakePlugin.js"

/** Fake plugins, each loaded as the operator loads it; every RPC they receive lands in `calls`. */
const loaded = (...options: ReadonlyArray<FakePluginOptions>) =>
  Effect.gen(function* () {
    const dir = yield* tempDir()
    const calls: Array<string> = []
    const plugins = []
    for (const option of options) {
      yield* fakePlugin(dir, option, calls)
      const socket = path.join(dir, option.name)
      plugins.push(yield* Effect.orDie(loadPlugin(yield* openChannel(`unix://${socket}`), socket)))
    }
    calls.length = 0
    return { plugins, calls }
  })

const pod = { apiVersion: "v1", kind: "Pod", metadata: { name: "pg-1" }, spec: { containers: [] } }
const podCreate = [{ group: "", kind: "Pod", operationTypes: [{ type: Op.TYPE_CREATE }] }]

describe("LifecycleHook (operator side)", () => {
  it.scopedLive("calls only plugins with the object's group, kind and operation; patches apply in turn", () =>
    Effect.gen(function* () {
      const { plugins, calls } = yield* loaded(
        {
          name: "a.example",
          services: [Service.TYPE_LIFECYCLE_SERVICE],
          lifecycle: podCreate,
          patch: [{ op: "add", path: "/metadata/labels", value: { a: "1" } }],
        },
        // The second sees the first one's label and adds its own beside it.
        {
          name: "b.example",
          services: [Service.TYPE_LIFECYCLE_SERVICE],
          lifecycle: podCreate,
          patch: [{ op: "add", path: "/metadata/labels/b", value: "2" }],
        },
        {
          name: "c.example",
          services: [Service.TYPE_LIFECYCLE_SERVICE],
          lifecycle: [{ group: "batch", kind: "Job", operationTypes: [{ type: Op.TYPE_CREATE }] }],
          patch: [{ op: "add", path: "/metadata/labels/c", value: "3" }],
        },
        // Same kind, another operation.
        {
          name: "d.example",
          services: [Service.TYPE_LIFECYCLE_SERVICE],
          lifecycle: [{ group: "", kind: "Pod", operationTypes: [{ type: Op.TYPE_DELETE }] }],
          patch: [{ op: "add", path: "/metadata/labels/d", value: "4" }],
        },
        // An empty patch is no change.
        { name: "e.example", services: [Service.TYPE_LIFECYCLE_SERVICE], lifecycle: podCreate },
      )
      const patched = yield* lifecycleHook(plugins, Op.TYPE_CREATE, {}, pod)
      assert.deepStrictEqual(patched, { ...pod, metadata: { name: "pg-1", labels: { a: "1", b: "2" } } })
      assert.deepStrictEqual(
        calls.filter((call) => call.endsWith("LifecycleHook")),
        [
          "a.example OperatorLifecycle/LifecycleHook",
          "b.example OperatorLifecycle/LifecycleHook",
          "e.example OperatorLifecycle/LifecycleHook",
        ],
      )
    }),
  )
})

describe("ReconcilerHooks (operator side)", () => {
  it.scopedLive("only plugins with the kind are called; REQUEUE and TERMINATE stop the loop", () =>
    Effect.gen(function* () {
      const { plugins, calls } = yield* loaded(
        { name: "a.example", services: [Service.TYPE_RECONCILER_HOOKS], reconcilerKinds: [Kind.KIND_BACKUP] },
        {
          name: "b.example",
          services: [Service.TYPE_RECONCILER_HOOKS],
          reconcilerKinds: [Kind.KIND_CLUSTER],
        },
        {
          name: "c.example",
          services: [Service.TYPE_RECONCILER_HOOKS],
          reconcilerKinds: [Kind.KIND_CLUSTER],
          behavior: Behavior.BEHAVIOR_REQUEUE,
        },
        {
          name: "d.example",
          services: [Service.TYPE_RECONCILER_HOOKS],
          reconcilerKinds: [Kind.KIND_CLUSTER],
        },
      )
      assert.deepStrictEqual(yield* reconcilerHook(plugins, "pre", Kind.KIND_CLUSTER, {}, {}), {
        _tag: "Requeue",
        afterSeconds: 7,
      })
      assert.deepStrictEqual(
        calls.filter((call) => call.endsWith("/Pre")),
        ["b.example ReconcilerHooks/Pre", "c.example ReconcilerHooks/Pre"],
      )
    }),
  )

  it.scopedLive("TERMINATE stops it too; CONTINUE from all is Continue", () =>
    Effect.gen(function* () {
      const { plugins, calls } = yield* loaded(
        {
          name: "a.example",
          services: [Service.TYPE_RECONCILER_HOOKS],
          reconcilerKinds: [Kind.KIND_BACKUP],
          behavior: Behavior.BEHAVIOR_TERMINATE,
        },
        { name: "b.example", services: [Service.TYPE_RECONCILER_HOOKS], reconcilerKinds: [Kind.KIND_BACKUP] },
      )
      assert.deepStrictEqual(yield* reconcilerHook(plugins, "post", Kind.KIND_BACKUP, {}, {}), {
        _tag: "Terminate",
      })
      assert.deepStrictEqual(calls, ["a.example Identity/Probe", "a.example ReconcilerHooks/Post"])
      assert.deepStrictEqual(yield* reconcilerHook(plugins.slice(1), "post", Kind.KIND_BACKUP, {}, {}), {
        _tag: "Continue",
      })
    }),
  )
})

describe("SetStatusInCluster (operator side)", () => {
  it.scopedLive(
    "asks only plugins with the RPC, skips empty answers, refuses a status that is not an object",
    () =>
      Effect.gen(function* () {
        const { plugins, calls } = yield* loaded(
          {
            name: "a.example",
            services: [Service.TYPE_OPERATOR_SERVICE],
            operatorRpcs: [],
            status: '{"never":1}',
          },
          {
            name: "b.example",
            services: [Service.TYPE_OPERATOR_SERVICE],
            operatorRpcs: [OperatorCapability_RPC_Type.TYPE_SET_STATUS_IN_CLUSTER],
            status: '{"ok":true}',
          },
          {
            name: "c.example",
            services: [Service.TYPE_OPERATOR_SERVICE],
            operatorRpcs: [OperatorCapability_RPC_Type.TYPE_SET_STATUS_IN_CLUSTER],
          },
          {
            name: "d.example",
            services: [Service.TYPE_OPERATOR_SERVICE],
            operatorRpcs: [OperatorCapability_RPC_Type.TYPE_SET_STATUS_IN_CLUSTER],
            status: "[1]",
          },
        )
        const statuses = yield* setStatusInCluster(plugins.slice(0, 3), {})
        assert.deepStrictEqual([...statuses], [["b.example", '{"ok":true}']])
        assert.isFalse(calls.includes("a.example Operator/SetStatusInCluster"))
        const error = yield* Effect.flip(setStatusInCluster(plugins, {}))
        assert.include(error.reason, "not a JSON object")
      }),
  )
})

describe("plugin Service discovery", () => {
  const service = (
    namespace: string,
    annotations: Record<string, string>,
    labels: Record<string, string> = { "cnpg.io/pluginName": "p" },
  ) => ({
    metadata: { name: "svc", namespace, labels, annotations },
  })
  const full = {
    "cnpg.io/pluginClientSecret": "client",
    "cnpg.io/pluginServerSecret": "server",
    "cnpg.io/pluginPort": "9090",
  }

  it("reads the address, server name and Secrets from the label and annotations", () => {
    assert.deepStrictEqual(
      pluginServiceOf(service("cnpg-system", full), "cnpg-system"),
      Either.right({
        pluginName: "p",
        address: "svc.cnpg-system.svc:9090",
        serverName: "svc",
        clientSecret: "client",
        serverSecret: "server",
      }),
    )
    const named = pluginServiceOf(
      service("cnpg-system", { ...full, "cnpg.io/pluginServerName": "other" }),
      "cnpg-system",
    )
    assert.isTrue(Either.isRight(named) && named.right.serverName === "other")
  })

  it("is not a plugin outside the operator namespace, without the label or an annotation", () => {
    assert.isTrue(Either.isLeft(pluginServiceOf(service("elsewhere", full), "cnpg-system")))
    assert.isTrue(Either.isLeft(pluginServiceOf(service("cnpg-system", full, {}), "cnpg-system")))
    const { "cnpg.io/pluginPort": _, ...noPort } = full
    assert.isTrue(Either.isLeft(pluginServiceOf(service("cnpg-system", noPort), "cnpg-system")))
  })
})
