import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { applyPatch } from "fast-json-patch"
import { type JsonPatchOperation, pointer } from "../../src/domain/jsonPatch.js"
import { type SidecarSettingsShape, sidecarPatch } from "../../src/domain/sidecar.js"

const fixture = (name: string): unknown =>
  JSON.parse(fs.readFileSync(`test/fixtures/cnpg/${name}.json`, "utf8"))

const IMAGE = "ghcr.io/dalibo/cnpg-plugin-pgbackrest:0.1.0"
const settings: SidecarSettingsShape = { image: IMAGE, logLevel: "info" }

const patchOf = (cluster: unknown, object: unknown): ReadonlyArray<JsonPatchOperation> => {
  const result = sidecarPatch(cluster, object, settings)
  if (Either.isLeft(result)) {
    return assert.fail(result.left.message)
  }
  return result.right
}

/** Applies the patch the way the operator does (invalid operations throw) to a copy of `object`. */
const apply = (object: unknown, operations: ReadonlyArray<JsonPatchOperation>): unknown =>
  applyPatch(structuredClone(object), operations, true, false).newDocument

/** Patches `object`, checks that patching the result changes nothing more, returns the result. */
const inject = (cluster: unknown, object: unknown): unknown => {
  const patched = apply(object, patchOf(cluster, object))
  assert.deepStrictEqual(patchOf(cluster, patched), [], "a patched object must yield an empty patch")
  return patched
}

/** Walks parsed JSON: object keys, array indexes, or `{ name }` to pick a list entry by name. */
const at = (value: unknown, ...path: ReadonlyArray<string | number | { readonly name: string }>): unknown =>
  path.reduce<unknown>((current, step) => {
    if (typeof step === "object") {
      return Array.isArray(current)
        ? current.find((item: unknown) => at(item, "name") === step.name)
        : undefined
    }
    return typeof current === "object" && current !== null
      ? Object.entries(current).find(([key]) => key === String(step))?.[1]
      : undefined
  }, value)

const names = (list: unknown): ReadonlyArray<unknown> =>
  Array.isArray(list) ? list.map((i) => at(i, "name")) : []

const demoCluster = fixture("cluster-demo")
const demoPod = fixture("pod-cluster-demo-1")
const POSTGRES_ENV = at(demoPod, "spec", "containers", { name: "postgres" }, "env")
const PLUGINS_MOUNT = { name: "plugins", mountPath: "/plugins" }

/** The Pod of the fixture with the sidecar (reviewed by hand; see the README beside it). */
const expectedPod = fixture("pod-cluster-demo-1.patched")
const expectedSidecar = at(expectedPod, "spec", "initContainers", { name: "pgbackrest-plugin" })

describe("sidecarPatch: instance Pods", () => {
  it("turns the Pod CloudNativePG 1.27 builds into the expected Pod, and nothing else", () => {
    const operations = patchOf(demoCluster, demoPod)
    assert.deepStrictEqual(
      operations.map((operation) => [operation.op, operation.path]),
      [
        ["add", "/spec/volumes/-"],
        ["add", "/spec/containers/0/volumeMounts/-"],
        ["add", "/spec/initContainers/-"],
      ],
    )
    const pod = inject(demoCluster, demoPod)
    assert.deepStrictEqual(pod, expectedPod)
    // A native sidecar, after bootstrap-controller (which copies /controller/manager first).
    assert.deepStrictEqual(at(pod, "spec", "initContainers", 1), expectedSidecar)
    assert.strictEqual(at(expectedSidecar, "image"), IMAGE)
    // Everything else is as the operator built it.
    const unchanged = apply(pod, [
      { op: "remove", path: "/spec/initContainers/1" },
      { op: "remove", path: "/spec/volumes/3" },
      { op: "remove", path: "/spec/containers/0/volumeMounts/4" },
    ])
    assert.deepStrictEqual(unchanged, demoPod)
  })

  it("copies the postgres container's env and mounts verbatim, whatever their fields", () => {
    const pod = apply(demoPod, [
      {
        op: "add",
        path: "/spec/containers/0/env/-",
        value: { name: "APP_PASSWORD", valueFrom: { secretKeyRef: { name: "app", key: "password" } } },
      },
      { op: "add", path: "/spec/containers/0/envFrom", value: [{ configMapRef: { name: "extra" } }] },
      {
        op: "add",
        path: "/spec/containers/0/volumeMounts/-",
        value: { name: "projected", mountPath: "/projected", readOnly: true },
      },
    ])
    const sidecar = at(inject(demoCluster, pod), "spec", "initContainers", { name: "pgbackrest-plugin" })
    assert.deepStrictEqual(at(sidecar, "env", { name: "APP_PASSWORD" }), {
      name: "APP_PASSWORD",
      valueFrom: { secretKeyRef: { name: "app", key: "password" } },
    })
    assert.deepStrictEqual(at(sidecar, "envFrom"), [{ configMapRef: { name: "extra" } }])
    assert.deepStrictEqual(at(sidecar, "volumeMounts", { name: "projected" }), {
      name: "projected",
      mountPath: "/projected",
      readOnly: true,
    })
    assert.deepStrictEqual(at(sidecar, "env", 0), at(POSTGRES_ENV, 0))
  })

  it("puts the spool and state on the WAL volume when the Cluster has walStorage, never an emptyDir", () => {
    const pod = inject(fixture("cluster-wal"), fixture("pod-cluster-wal-1"))
    const sidecar = at(pod, "spec", "initContainers", { name: "pgbackrest-plugin" })
    const value = (name: string) => at(sidecar, "env", { name }, "value")
    assert.strictEqual(value("CNPG_PGBACKREST_SPOOL_PATH"), "/var/lib/postgresql/wal/pgbackrest-spool")
    assert.strictEqual(value("CNPG_PGBACKREST_STATE_DIR"), "/var/lib/postgresql/wal/pgbackrest-plugin")
    assert.strictEqual(value("CNPG_PGBACKREST_RUN_DIR"), "/controller/tmp/pgbackrest-plugin")
    assert.strictEqual(value("TZ"), "Europe/Paris")
    assert.deepStrictEqual(at(sidecar, "volumeMounts", { name: "pg-wal" }), {
      name: "pg-wal",
      mountPath: "/var/lib/postgresql/wal",
    })
    // The Cluster sets no imagePullPolicy: neither does the sidecar (the kubelet's default applies).
    assert.strictEqual(at(sidecar, "imagePullPolicy"), undefined)
  })

  it("keeps the spool on the data volume when the Pod does not mount a WAL volume", () => {
    const sidecar = at(inject(fixture("cluster-wal"), demoPod), "spec", "initContainers", 1)
    assert.strictEqual(
      at(sidecar, "env", { name: "CNPG_PGBACKREST_SPOOL_PATH" }, "value"),
      "/var/lib/postgresql/data/pgbackrest-spool",
    )
  })

  it("lets a value set in Cluster.spec.env win over the plugin's own", () => {
    const pod = apply(demoPod, [
      {
        op: "add",
        path: "/spec/containers/0/env/-",
        value: { name: "CNPG_PGBACKREST_SPOOL_PATH", value: "/x" },
      },
    ])
    const env = at(inject(demoCluster, pod), "spec", "initContainers", 1, "env")
    assert.deepStrictEqual(
      Array.isArray(env) ? env.filter((v: unknown) => at(v, "name") === "CNPG_PGBACKREST_SPOOL_PATH") : [],
      [{ name: "CNPG_PGBACKREST_SPOOL_PATH", value: "/x" }],
    )
  })

  it("creates the lists a Pod does not have yet (absent or null)", () => {
    const bare = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "cluster-demo-1" },
      spec: { volumes: null, containers: [{ name: "postgres", image: "postgres:17" }] },
    }
    assert.deepStrictEqual(
      patchOf(demoCluster, bare).map((operation) => operation.path),
      ["/spec/volumes", "/spec/containers/0/volumeMounts", "/spec/initContainers"],
    )
    const pod = inject(demoCluster, bare)
    assert.deepStrictEqual(at(pod, "spec", "containers", 0, "volumeMounts"), [PLUGINS_MOUNT])
    assert.deepStrictEqual(at(pod, "spec", "initContainers", 0, "volumeMounts"), [PLUGINS_MOUNT])
  })

  it("shares /plugins with another plugin's sidecar instead of adding it twice", () => {
    const withBarman = apply(demoPod, [
      { op: "add", path: "/spec/volumes/-", value: { name: "plugins", emptyDir: {} } },
      { op: "add", path: "/spec/containers/0/volumeMounts/-", value: PLUGINS_MOUNT },
      {
        op: "add",
        path: "/spec/initContainers/-",
        value: { name: "plugin-barman-cloud", image: "barman", restartPolicy: "Always" },
      },
    ])
    assert.deepStrictEqual(
      patchOf(demoCluster, withBarman).map((operation) => operation.path),
      ["/spec/initContainers/-"],
    )
    const pod = inject(demoCluster, withBarman)
    const mounts = at(pod, "spec", "initContainers", { name: "pgbackrest-plugin" }, "volumeMounts")
    assert.deepStrictEqual(
      Array.isArray(mounts) ? mounts.filter((m: unknown) => at(m, "name") === "plugins") : [],
      [PLUGINS_MOUNT],
    )
  })

  it("injects into instances of a Cluster restored or replicating from a Stanza", () => {
    const restored = fixture("cluster-restored")
    const pod = inject(restored, demoPod)
    assert.strictEqual(at(pod, "spec", "initContainers", 1, "imagePullPolicy"), "Always")
    const replica = {
      metadata: { name: "cluster-demo" },
      spec: {
        replica: { enabled: true, source: "origin" },
        externalClusters: [{ name: "origin", plugin: { name: "pgbackrest.dalibo.com" } }],
      },
    }
    assert.strictEqual(patchOf(replica, demoPod).length, 3)
  })

  it("leaves Pods of Clusters that do not use the plugin (or disable it) untouched", () => {
    assert.deepStrictEqual(patchOf(fixture("cluster-other"), demoPod), [])
    assert.deepStrictEqual(patchOf({ metadata: { name: "bare" } }, demoPod), [])
  })

  it("leaves other objects alone, and Pods without a postgres container", () => {
    const service = { apiVersion: "v1", kind: "Service", metadata: { name: "cluster-demo-rw" }, spec: {} }
    assert.deepStrictEqual(patchOf(demoCluster, service), [])
    const pooler = { apiVersion: "v1", kind: "Pod", spec: { containers: [{ name: "pgbouncer" }] } }
    assert.deepStrictEqual(patchOf(demoCluster, pooler), [])
    const foreign = {
      apiVersion: "example.com/v1",
      kind: "Pod",
      spec: { containers: [{ name: "postgres" }] },
    }
    assert.deepStrictEqual(patchOf(demoCluster, foreign), [])
  })
})

describe("sidecarPatch: the full-recovery Job", () => {
  const restored = fixture("cluster-restored")
  const job = fixture("job-cluster-restored-1-full-recovery")

  it("adds the restore sidecar to the pod template, copying the full-recovery container", () => {
    const patched = inject(restored, job)
    const spec = at(patched, "spec", "template", "spec")
    assert.deepStrictEqual(names(at(spec, "initContainers")), ["bootstrap-controller", "pgbackrest-plugin"])
    const sidecar = at(spec, "initContainers", 1)
    assert.deepStrictEqual(at(sidecar, "args"), ["restore", "--log-level", "info"])
    assert.strictEqual(at(sidecar, "restartPolicy"), "Always")
    assert.strictEqual(at(sidecar, "env", { name: "POD_NAME" }, "value"), "cluster-restored-1-full-recovery")
    assert.strictEqual(
      at(sidecar, "env", { name: "CNPG_PGBACKREST_SPOOL_PATH" }, "value"),
      "/var/lib/postgresql/data/pgbackrest-spool",
    )
    const original = at(
      job,
      "spec",
      "template",
      "spec",
      "containers",
      { name: "full-recovery" },
      "volumeMounts",
    )
    const withPlugins = [...(Array.isArray(original) ? original : []), PLUGINS_MOUNT]
    assert.deepStrictEqual(at(sidecar, "volumeMounts"), withPlugins)
    assert.deepStrictEqual(at(spec, "containers", { name: "full-recovery" }, "volumeMounts"), withPlugins)
    assert.deepStrictEqual(at(spec, "volumes", { name: "plugins" }), { name: "plugins", emptyDir: {} })
    assert.deepStrictEqual(at(sidecar, "securityContext"), at(expectedSidecar, "securityContext"))
    assert.deepStrictEqual(at(sidecar, "startupProbe"), at(expectedSidecar, "startupProbe"))
  })

  it("adds it to the snapshot-recovery Job too, whose WAL replay goes through WAL.Restore alone", () => {
    const role = "snapshot-recovery"
    const snapshotJob = apply(job, [
      {
        op: "replace",
        path: pointer("spec", "template", "metadata", "labels", "cnpg.io/jobRole"),
        value: role,
      },
      { op: "replace", path: pointer("metadata", "labels", "cnpg.io/jobRole"), value: role },
      { op: "replace", path: pointer("spec", "template", "spec", "containers", "0", "name"), value: role },
    ])
    const spec = at(inject(restored, snapshotJob), "spec", "template", "spec")
    assert.deepStrictEqual(names(at(spec, "initContainers")), ["bootstrap-controller", "pgbackrest-plugin"])
    assert.deepStrictEqual(at(spec, "initContainers", 1, "args"), ["restore", "--log-level", "info"])
    const mounts = at(spec, "containers", { name: role }, "volumeMounts")
    assert.deepStrictEqual(at(spec, "initContainers", 1, "volumeMounts"), mounts)
    assert.isTrue(Array.isArray(mounts) && mounts.some((mount) => at(mount, "name") === "plugins"))
  })

  it("leaves other Jobs alone, and the Jobs of Clusters not restored from a Stanza", () => {
    const initdb = apply(job, [
      {
        op: "replace",
        path: pointer("spec", "template", "metadata", "labels", "cnpg.io/jobRole"),
        value: "initdb",
      },
      { op: "replace", path: pointer("metadata", "labels", "cnpg.io/jobRole"), value: "initdb" },
    ])
    assert.deepStrictEqual(patchOf(restored, initdb), [])
    assert.deepStrictEqual(patchOf(demoCluster, job), [])
    assert.deepStrictEqual(patchOf(fixture("cluster-other"), job), [])
  })
})

describe("sidecarPatch: errors", () => {
  it("refuses to inject without an image, naming SIDECAR_IMAGE", () => {
    const result = sidecarPatch(demoCluster, demoPod, { image: " ", logLevel: "info" })
    assert.isTrue(Either.isLeft(result) && result.left.field === "SIDECAR_IMAGE")
    // ... but a Cluster that does not use the plugin is never blocked by it.
    assert.deepStrictEqual(
      sidecarPatch(fixture("cluster-other"), demoPod, { image: "", logLevel: "info" }),
      Either.right([]),
    )
  })

  it("names the field of a Pod or Cluster that cannot be read", () => {
    const noContainers = sidecarPatch(demoCluster, { apiVersion: "v1", kind: "Pod", spec: {} }, settings)
    assert.isTrue(Either.isLeft(noContainers) && noContainers.left.field === "pod.spec.containers")
    const noName = sidecarPatch({ spec: {} }, demoPod, settings)
    assert.isTrue(Either.isLeft(noName) && noName.left.field === "cluster.metadata")
  })
})
