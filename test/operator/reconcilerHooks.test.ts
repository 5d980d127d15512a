import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Option, Predicate } from "effect"
import { Resources } from "../../src/adapters/kubernetes.js"
import {
  ReconcilerHooksCapability_Kind,
  type ReconcilerHooksResult,
  ReconcilerHooksResult_Behavior,
} from "../../src/generated/reconciler.js"
import { Reconciler, STANZA_REQUEUE_AFTER_SECONDS } from "../../src/operator/reconcilerHooks.js"
import {
  backupObject,
  bytes,
  clusterObject,
  collectingLogs,
  type Json,
  stanzaObject,
  withFakeApi,
} from "../support/pluginObjects.js"

const {
  BEHAVIOR_CONTINUE: CONTINUE,
  BEHAVIOR_REQUEUE: REQUEUE,
  BEHAVIOR_TERMINATE: TERMINATE,
} = ReconcilerHooksResult_Behavior

const rolesPath = "/apis/rbac.authorization.k8s.io/v1/namespaces/db/roles"
const bindingsPath = "/apis/rbac.authorization.k8s.io/v1/namespaces/db/rolebindings"

const setup = withFakeApi(Reconciler, Reconciler.Default)

const preCluster = (reconciler: Reconciler, cluster: Json) =>
  reconciler.pre({ clusterDefinition: bytes(cluster), resourceDefinition: bytes(cluster) })

const preBackup = (reconciler: Reconciler, backup: Json) =>
  reconciler.pre({ clusterDefinition: bytes(clusterObject()), resourceDefinition: bytes(backup) })

const behavior = (result: ReconcilerHooksResult) => result.behavior

const rulesOf = (object: Json | undefined): Array<Json> => (Array.isArray(object?.rules) ? object.rules : [])
const metadataOf = (object: Json | undefined): Json =>
  Predicate.isRecord(object?.metadata) ? object.metadata : {}

const stored = (server: Effect.Effect.Success<typeof setup>["server"], kind: "role" | "roleBinding") =>
  server.object(Resources[kind], "db", "pg-pgbackrest").pipe(Effect.map(Option.getOrUndefined))

describe("ReconcilerHooks", () => {
  it.scopedLive("advertises Cluster and Backup hooks; Post continues", () =>
    Effect.gen(function* () {
      const { service } = yield* setup
      const capabilities = yield* service.getCapabilities({})
      assert.deepStrictEqual(
        capabilities.reconcilerCapabilities.map((capability) => capability.kind),
        [ReconcilerHooksCapability_Kind.KIND_CLUSTER, ReconcilerHooksCapability_Kind.KIND_BACKUP],
      )
      const post = yield* service.post({ clusterDefinition: bytes({}), resourceDefinition: bytes({}) })
      assert.strictEqual(post.behavior, CONTINUE)
    }),
  )

  it.scopedLive("Pre creates the Role and RoleBinding, then writes nothing while nothing changes", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(
        stanzaObject("stanza-a", { secret: "s3-a" }),
        stanzaObject("stanza-o", { secret: "s3-o" }),
      )
      const cluster = clusterObject({ origin: "stanza-o" })
      assert.strictEqual(behavior(yield* preCluster(service, cluster)), CONTINUE)

      const role = yield* stored(server, "role")
      assert.deepStrictEqual(role?.rules, [
        {
          apiGroups: ["pgbackrest.dalibo.com"],
          resources: ["stanzas"],
          verbs: ["get", "list", "watch"],
          resourceNames: ["stanza-a", "stanza-o"],
        },
        {
          apiGroups: ["pgbackrest.dalibo.com"],
          resources: ["stanzas/status"],
          verbs: ["patch", "update"],
          resourceNames: ["stanza-a", "stanza-o"],
        },
        {
          apiGroups: [""],
          resources: ["secrets"],
          verbs: ["get", "list", "watch"],
          resourceNames: ["s3-a", "s3-o"],
        },
      ])
      assert.deepStrictEqual(metadataOf(role).ownerReferences, [
        {
          apiVersion: "postgresql.cnpg.io/v1",
          kind: "Cluster",
          name: "pg",
          uid: "0b7c5d1e-cluster-uid",
          controller: true,
        },
      ])
      const binding = yield* stored(server, "roleBinding")
      assert.deepStrictEqual(binding?.subjects, [{ kind: "ServiceAccount", name: "pg", namespace: "db" }])

      const before = (yield* server.requests).length
      assert.strictEqual(behavior(yield* preCluster(service, cluster)), CONTINUE)
      const after = (yield* server.requests).slice(before)
      assert.isAbove(after.length, 0)
      assert.deepStrictEqual(
        after.filter((request) => request.method !== "GET"),
        [],
      )
    }),
  )

  it.scopedLive("a Stanza whose secretRef changed updates the Role in place", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a", { secret: "s3-a" }))
      yield* preCluster(service, clusterObject())
      const created = yield* stored(server, "role")
      yield* server.seed(stanzaObject("stanza-a", { secret: "s3-rotated" }))
      const before = (yield* server.requests).length
      assert.strictEqual(behavior(yield* preCluster(service, clusterObject())), CONTINUE)
      const writes = (yield* server.requests).slice(before).filter((request) => request.method !== "GET")
      assert.deepStrictEqual(
        writes.map((request) => `${request.method} ${request.path}`),
        [`PUT ${rolesPath}/pg-pgbackrest`],
      )
      const role = yield* stored(server, "role")
      assert.deepStrictEqual(rulesOf(role)[2]?.resourceNames, ["s3-rotated"])
      assert.strictEqual(metadataOf(role).uid, metadataOf(created).uid)
    }),
  )

  it.scopedLive("a missing Stanza requeues, says why, and grants nothing", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      const lines: Array<string> = []
      const result = yield* preCluster(service, clusterObject({ stanzaRef: "absent" })).pipe(
        Effect.provide(collectingLogs(lines)),
      )
      assert.deepStrictEqual(result, { behavior: REQUEUE, requeueAfter: STANZA_REQUEUE_AFTER_SECONDS })
      assert.isTrue(
        lines.some((line) => line.includes("requeuing") && line.includes("Stanza db/absent not found")),
        lines.join("\n"),
      )
      assert.isUndefined(yield* stored(server, "role"))
    }),
  )

  it.scopedLive("an invalid Stanza requeues and logs the field", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      const broken = stanzaObject("stanza-a")
      yield* server.seed({
        ...broken,
        spec: { stanzaConfiguration: { name: "main", s3Repositories: [{ bucket: "b" }] } },
      })
      const lines: Array<string> = []
      const result = yield* preCluster(service, clusterObject()).pipe(Effect.provide(collectingLogs(lines)))
      assert.strictEqual(result.behavior, REQUEUE)
      assert.isTrue(
        lines.some((line) => line.includes("spec.stanzaConfiguration.s3Repositories[0]")),
        lines.join("\n"),
      )
    }),
  )

  it.scopedLive("a Cluster that does not use the plugin continues without a request", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      assert.strictEqual(behavior(yield* preCluster(service, clusterObject({ plugin: false }))), CONTINUE)
      const { metadata, spec } = clusterObject({ plugin: false })
      assert.strictEqual(behavior(yield* preCluster(service, { metadata, spec })), CONTINUE)
      assert.deepStrictEqual(yield* server.requests, [])
    }),
  )

  it.scopedLive("RBAC refusing the create is an error naming the action", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a"))
      yield* server.failNext({ path: rolesPath, method: "POST", status: 403, times: 1 })
      const exit = yield* Effect.exit(preCluster(service, clusterObject()))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        assert.strictEqual(error?._tag, "PermissionDenied")
        assert.include(error?.message, "create roles.rbac.authorization.k8s.io/pg-pgbackrest in namespace db")
      }
    }),
  )

  it.scopedLive("a conflicting write is retried once after a fresh read; a second conflict fails", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a", { secret: "one" }))
      yield* preCluster(service, clusterObject())
      yield* server.seed(stanzaObject("stanza-a", { secret: "two" }))
      yield* server.failNext({ path: `${rolesPath}/pg-pgbackrest`, method: "PUT", status: 409, times: 1 })
      assert.strictEqual(behavior(yield* preCluster(service, clusterObject())), CONTINUE)
      assert.deepStrictEqual(rulesOf(yield* stored(server, "role"))[2]?.resourceNames, ["two"])

      yield* server.seed(stanzaObject("stanza-a", { secret: "three" }))
      yield* server.failNext({ path: `${rolesPath}/pg-pgbackrest`, method: "PUT", status: 409, times: 2 })
      const exit = yield* Effect.exit(preCluster(service, clusterObject()))
      assert.isTrue(
        Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "FailedPrecondition",
      )
    }),
  )

  it.scopedLive("a RoleBinding to another Role is reported, not overwritten", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a"), {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "pg-pgbackrest", namespace: "db" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "admin" },
        subjects: [{ kind: "ServiceAccount", name: "pg", namespace: "db" }],
      })
      const exit = yield* Effect.exit(preCluster(service, clusterObject()))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        assert.include(exit.cause.error.message, "delete the RoleBinding")
      }
      const writes = (yield* server.requests).filter(
        (r) => r.method === "PUT" && r.path.startsWith(bindingsPath),
      )
      assert.deepStrictEqual(writes, [])
    }),
  )
})

describe("ReconcilerHooks Pre for a Backup", () => {
  const backupStatus = (server: Effect.Effect.Success<typeof setup>["server"], name: string) =>
    server
      .object({ group: "postgresql.cnpg.io", plural: "backups" }, "db", name)
      .pipe(Effect.map((backup) => Option.getOrUndefined(backup)?.status))

  it.scopedLive("valid parameters, or a Backup for another plugin, continue", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a", { posix: 1 }))
      for (const parameters of [undefined, {}, { selectedRepository: "2", backupType: "diff" }]) {
        assert.strictEqual(behavior(yield* preBackup(service, backupObject("b", parameters))), CONTINUE)
      }
      const other = backupObject("b", { anything: "x" }, "barman-cloud.cloudnative-pg.io")
      assert.strictEqual(behavior(yield* preBackup(service, other)), CONTINUE)
    }),
  )

  it.scopedLive("invalid parameters mark the Backup failed with the reason, then terminate", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a", { posix: 1 }))
      const cases: ReadonlyArray<readonly [Record<string, string>, string]> = [
        [
          { selectedRepository: "0" },
          'spec.pluginConfiguration.parameters.selectedRepository: must be between 1 and 2, got "0"',
        ],
        [{ selectedRepository: "3" }, 'must be between 1 and 2, got "3"'],
        [{ backupType: "snapshot" }, 'backupType: must be one of full, diff, incr, got "snapshot"'],
        [{ repository: "1" }, "spec.pluginConfiguration.parameters.repository: unknown field"],
      ]
      for (const [index, [parameters, expected]] of cases.entries()) {
        const backup = backupObject(`bad-${index}`, parameters)
        yield* server.seed(backup)
        assert.strictEqual(behavior(yield* preBackup(service, backup)), TERMINATE)
        const status = (yield* backupStatus(server, `bad-${index}`)) as Json | undefined
        assert.strictEqual(status?.phase, "failed")
        assert.include(String(status?.error), expected)
      }
    }),
  )

  it.scopedLive("when the Backup cannot be marked failed, the instance is left to refuse it", () =>
    Effect.gen(function* () {
      const { server, service } = yield* setup
      yield* server.seed(stanzaObject("stanza-a"))
      const backup = backupObject("denied", { selectedRepository: "9" })
      yield* server.seed(backup)
      yield* server.failNext({
        path: "/apis/postgresql.cnpg.io/v1/namespaces/db/backups/denied/status",
        status: 403,
        times: 1,
      })
      assert.strictEqual(behavior(yield* preBackup(service, backup)), CONTINUE)
    }),
  )

  it.scopedLive("a missing Stanza requeues the Backup", () =>
    Effect.gen(function* () {
      const { service } = yield* setup
      const result = yield* preBackup(service, backupObject("b", { selectedRepository: "1" }))
      assert.deepStrictEqual(result, { behavior: REQUEUE, requeueAfter: STANZA_REQUEUE_AFTER_SECONDS })
    }),
  )
})
