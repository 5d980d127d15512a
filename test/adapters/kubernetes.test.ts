import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { KubeConfig } from "@kubernetes/client-node"
import { Context, Effect, Exit, Layer, Option, Redacted } from "effect"
import { Kubernetes, Resources } from "../../src/adapters/kubernetes.js"
import { fakeApiServer, kubeConfigFor } from "../support/fakeApiServer.js"
import { tempDir } from "../support/tempDir.js"

const stanza = {
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: "stanza-sample", namespace: "db" },
  spec: {
    stanzaConfiguration: {
      name: "main",
      s3Repositories: [
        {
          bucket: "demo",
          endpoint: "minio.minio.svc.cluster.local:9000",
          region: "us-east-1",
          repoPath: "/cluster-demo",
          secretRef: {
            accessKeyId: { name: "s3-creds", key: "ACCESS_KEY_ID" },
            secretAccessKey: { name: "s3-creds", key: "ACCESS_SECRET_KEY" },
          },
        },
      ],
    },
  },
  status: { conditions: [{ type: "Ready", status: "True" }] },
}

const cluster = {
  apiVersion: "postgresql.cnpg.io/v1",
  kind: "Cluster",
  metadata: { name: "cluster-demo", namespace: "db" },
  spec: {
    instances: 3,
    plugins: [
      { name: "pgbackrest.dalibo.com", isWALArchiver: true, parameters: { stanzaRef: "stanza-sample" } },
    ],
  },
}

const SECRET_ACCESS_KEY = "s3cr3t-Ünïcødé/+="
const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64")

const s3Secret = {
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "s3-creds", namespace: "db" },
  type: "Opaque",
  data: { ACCESS_KEY_ID: b64("AKIA-EXAMPLE"), ACCESS_SECRET_KEY: b64(SECRET_ACCESS_KEY) },
}

/** A fake API server with the sample objects, and the real client-node layer pointed at it. */
const setup = Effect.gen(function* () {
  const server = yield* fakeApiServer()
  yield* server.seed(stanza, cluster, s3Secret)
  const context = yield* Layer.build(Kubernetes.fromKubeConfig(kubeConfigFor(server)))
  return { server, kubernetes: Context.get(context, Kubernetes) }
})

const stanzaPath = "/apis/pgbackrest.dalibo.com/v1/namespaces/db/stanzas/stanza-sample"
const secretPath = "/api/v1/namespaces/db/secrets/s3-creds"

describe("Kubernetes through client-node against a fake API server", () => {
  it.scopedLive("reads a Cluster and a Stanza with the service account token", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      const readCluster = yield* kubernetes.getCluster("db", "cluster-demo")
      const readStanza = yield* kubernetes.getStanza("db", "stanza-sample")
      assert.deepStrictEqual(
        (yield* server.object(Resources.cluster, "db", "cluster-demo")).pipe(Option.getOrUndefined),
        readCluster,
      )
      assert.deepStrictEqual(
        (yield* server.object(Resources.stanza, "db", "stanza-sample")).pipe(Option.getOrUndefined),
        readStanza,
      )
      const paths = (yield* server.requests).map((r) => `${r.method} ${r.path}`)
      assert.deepStrictEqual(paths, [
        "GET /apis/postgresql.cnpg.io/v1/namespaces/db/clusters/cluster-demo",
        `GET ${stanzaPath}`,
      ])
    }),
  )

  it.scopedLive("decodes a Secret's base64 data, and stringData folded in by the API server", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      yield* server.seed({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "cipher", namespace: "db" },
        stringData: { passphrase: "correct horse battery staple" },
      })
      const values = yield* kubernetes.getSecret("db", "s3-creds")
      assert.deepStrictEqual(Object.keys(values).sort(), ["ACCESS_KEY_ID", "ACCESS_SECRET_KEY"])
      assert.strictEqual(Redacted.value(values.ACCESS_SECRET_KEY ?? Redacted.make("")), SECRET_ACCESS_KEY)
      assert.strictEqual(String(values.ACCESS_SECRET_KEY), "<redacted>")
      const cipher = yield* kubernetes.getSecret("db", "cipher")
      assert.strictEqual(
        Redacted.value(cipher.passphrase ?? Redacted.make("")),
        "correct horse battery staple",
      )
    }),
  )

  it.scopedLive("404 is NotFound naming the kind, namespace and name", () =>
    Effect.gen(function* () {
      const { kubernetes } = yield* setup
      const error = yield* Effect.flip(kubernetes.getStanza("db", "missing"))
      assert.strictEqual(error._tag, "NotFound")
      assert.strictEqual(error.message, "Stanza db/missing not found")
      const secret = yield* Effect.flip(kubernetes.getSecret("other", "s3-creds"))
      assert.strictEqual(secret.message, "Secret other/s3-creds not found")
    }),
  )

  it.scopedLive("404 for a resource the server does not serve says so (CRD not installed)", () =>
    Effect.gen(function* () {
      const { kubernetes } = yield* setup
      const error = yield* Effect.flip(
        kubernetes.get({ group: "example.com", version: "v1", plural: "widgets", kind: "Widget" }, "db", "w"),
      )
      assert.strictEqual(error._tag, "NotFound")
      assert.include(error.message, "Widget db/w not found")
      assert.include(error.message, "could not find the requested resource")
    }),
  )

  it.scopedLive("403 is PermissionDenied with the action and the API's message, never retried", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      yield* server.failNext({ path: secretPath, status: 403, times: 1 })
      const error = yield* Effect.flip(kubernetes.getSecret("db", "s3-creds"))
      assert.strictEqual(error._tag, "PermissionDenied")
      assert.include(error.message, "not allowed to get secrets/s3-creds in namespace db")
      assert.include(error.message, 'cannot get resource "secrets" in API group "" in the namespace "db"')
      assert.strictEqual((yield* server.requests).length, 1)
    }),
  )

  it.scopedLive("a wrong token is PermissionDenied (401)", () =>
    Effect.gen(function* () {
      const server = yield* fakeApiServer()
      const context = yield* Layer.build(
        Kubernetes.fromKubeConfig(kubeConfigFor({ ...server, token: "stale" })),
      )
      const error = yield* Effect.flip(Context.get(context, Kubernetes).getStanza("db", "stanza-sample"))
      assert.strictEqual(error._tag, "PermissionDenied")
      assert.include(error.message, "401")
    }),
  )

  it.scopedLive("a 500 then a 429 are retried and the read succeeds", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      yield* server.failNext({ path: stanzaPath, status: 500, times: 1 })
      yield* server.failNext({ path: stanzaPath, status: 429, times: 1 })
      const read = yield* kubernetes.getStanza("db", "stanza-sample")
      assert.isTrue(Option.isSome(yield* server.object(Resources.stanza, "db", "stanza-sample")))
      assert.isDefined(read)
      assert.strictEqual((yield* server.requests).length, 3)
    }),
  )

  it.scopedLive("a persistent 500 ends as Unavailable after a bounded number of retries, within 5 s", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      yield* server.failNext({ path: stanzaPath, status: 500, times: 100 })
      const started = Date.now()
      const error = yield* Effect.flip(kubernetes.getStanza("db", "stanza-sample"))
      assert.isBelow(Date.now() - started, 5_000)
      assert.strictEqual(error._tag, "Unavailable")
      assert.include(error.message, "Kubernetes API unavailable")
      assert.include(error.message, "HTTP 500")
      assert.strictEqual((yield* server.requests).length, 5)
    }),
  )

  it.scopedLive("an unreachable API server is Unavailable", () =>
    Effect.gen(function* () {
      const port = yield* Effect.promise(
        () =>
          new Promise<number>((resolve) => {
            const probe = net.createServer().listen(0, "127.0.0.1", () => {
              const address = probe.address()
              probe.close(() => resolve(typeof address === "object" && address !== null ? address.port : 1))
            })
          }),
      )
      const context = yield* Layer.build(
        Kubernetes.fromKubeConfig(kubeConfigFor({ url: `http://127.0.0.1:${port}`, token: "t" })),
      )
      const error = yield* Effect.flip(Context.get(context, Kubernetes).getStanza("db", "stanza-sample"))
      assert.strictEqual(error._tag, "Unavailable")
      assert.include(error.message, "get stanzas.pgbackrest.dalibo.com/stanza-sample in namespace db")
    }),
  )

  it.scopedLive("a 200 whose body is not a Kubernetes object is Unavailable with a decode message", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      yield* server.failNext({
        path: stanzaPath,
        status: 200,
        times: 100,
        rawBody: "<html>proxy login</html>",
      })
      const error = yield* Effect.flip(kubernetes.getStanza("db", "stanza-sample"))
      assert.strictEqual(error._tag, "Unavailable")
      assert.include(error.message, "does not decode as a Kubernetes object: it is not JSON")
    }),
  )

  it.scopedLive("a Secret that does not decode is reported by key, never by value", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      const broken = { ...s3Secret, data: { ACCESS_SECRET_KEY: `${SECRET_ACCESS_KEY}!` } }
      yield* server.failNext({ path: secretPath, status: 200, times: 100, rawBody: JSON.stringify(broken) })
      const error = yield* Effect.flip(kubernetes.getSecret("db", "s3-creds"))
      assert.strictEqual(error._tag, "Unavailable")
      assert.include(error.message, "data.ACCESS_SECRET_KEY is not valid base64")
      assert.notInclude(error.message, SECRET_ACCESS_KEY)
    }),
  )

  it.scopedLive("patchStanzaStatus sends a merge patch of {status} to the status subresource", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      const before = yield* server
        .object(Resources.stanza, "db", "stanza-sample")
        .pipe(Effect.map(Option.getOrThrow))
      const status = {
        lastArchivedWAL: "000000010000000000000003",
        lastArchivedWALTime: "2025-01-01T00:00:00Z",
      }
      yield* kubernetes.patchStanzaStatus("db", "stanza-sample", status)

      const [request] = yield* server.requests
      assert.strictEqual(request?.method, "PATCH")
      assert.strictEqual(request?.path, `${stanzaPath}/status`)
      assert.strictEqual(request?.contentType, "application/merge-patch+json")
      assert.deepStrictEqual(request?.body, { status })

      const after = yield* server
        .object(Resources.stanza, "db", "stanza-sample")
        .pipe(Effect.map(Option.getOrThrow))
      assert.deepStrictEqual(after.spec, before.spec)
      assert.deepStrictEqual(after.status, { ...stanza.status, ...status })
      assert.notDeepEqual(after.metadata, before.metadata)
    }),
  )

  it.scopedLive("create and replace: conflicts are FailedPrecondition", () =>
    Effect.gen(function* () {
      const { server, kubernetes } = yield* setup
      const role = {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "cluster-demo-pgbackrest", namespace: "db" },
        rules: [{ apiGroups: [""], resources: ["secrets"], resourceNames: ["s3-creds"], verbs: ["get"] }],
      }
      const created = yield* kubernetes.create(Resources.role, "db", role)
      const again = yield* Effect.flip(kubernetes.create(Resources.role, "db", role))
      assert.strictEqual(again._tag, "FailedPrecondition")
      assert.include(again.message, "conflict")
      assert.include(again.message, "already exists")

      const stale = { ...role, metadata: { ...role.metadata, resourceVersion: "1" } }
      const conflict = yield* Effect.flip(kubernetes.replace(Resources.role, "db", role.metadata.name, stale))
      assert.strictEqual(conflict._tag, "FailedPrecondition")

      const resourceVersion = yield* Effect.sync(() => JSON.stringify(created)).pipe(
        Effect.map((text) => /"resourceVersion":"(\d+)"/.exec(text)?.[1]),
      )
      const current = { ...role, metadata: { ...role.metadata, resourceVersion }, rules: [] }
      yield* kubernetes.replace(Resources.role, "db", role.metadata.name, current)
      const stored = yield* server
        .object(Resources.role, "db", role.metadata.name)
        .pipe(Effect.map(Option.getOrThrow))
      assert.deepStrictEqual(stored.rules, [])
      const methods = (yield* server.requests).map((r) => `${r.method} ${r.path}`)
      assert.deepStrictEqual(methods, [
        "POST /apis/rbac.authorization.k8s.io/v1/namespaces/db/roles",
        "POST /apis/rbac.authorization.k8s.io/v1/namespaces/db/roles",
        "PUT /apis/rbac.authorization.k8s.io/v1/namespaces/db/roles/cluster-demo-pgbackrest",
        "PUT /apis/rbac.authorization.k8s.io/v1/namespaces/db/roles/cluster-demo-pgbackrest",
      ])
    }),
  )

  it.effect("a kubeconfig without a cluster fails the layer with Unavailable", () =>
    Effect.gen(function* () {
      const exit = yield* Layer.build(Kubernetes.fromKubeConfig(new KubeConfig())).pipe(
        Effect.scoped,
        Effect.exit,
      )
      assert.isTrue(Exit.isFailure(exit))
    }),
  )
})

const manifests = {
  "secrets.yaml": `# the repository credentials, as in the documentation
apiVersion: v1
kind: Secret
metadata:
  name: pgbackrest-s3-secret
  namespace: db
type: Opaque
stringData:
  ACCESS_KEY_ID: minioadmin
  ACCESS_SECRET_KEY: "${SECRET_ACCESS_KEY}"
---
apiVersion: v1
kind: Secret
metadata:
  name: cipher
data:
  passphrase: ${b64("correct horse battery staple")}
---
`,
  "stanza.yml": `---
apiVersion: pgbackrest.dalibo.com/v1
kind: Stanza
metadata:
  name: stanza-sample
  namespace: db
spec:
  stanzaConfiguration:
    name: main
    s3Repositories:
      - bucket: demo
        endpoint: minio.minio.svc.cluster.local:9000
        region: us-east-1
        repoPath: /cluster-demo
        secretRef:
          accessKeyId:
            name: pgbackrest-s3-secret
            key: ACCESS_KEY_ID
`,
  "cluster.yaml": `apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: cluster-demo
spec:
  instances: 3
  plugins:
    - name: pgbackrest.dalibo.com
      isWALArchiver: true
      parameters:
        stanzaRef: stanza-sample
`,
  "README.md": "not a manifest\n",
}

const writeManifests = (dir: string, files: Record<string, string>) =>
  Effect.promise(() =>
    Promise.all(Object.entries(files).map(([name, text]) => fs.writeFile(path.join(dir, name), text))),
  )

const local = (dir: string) =>
  Layer.build(Kubernetes.Local(dir).pipe(Layer.provide(NodeContext.layer))).pipe(
    Effect.map((context) => Context.get(context, Kubernetes)),
  )

describe("Kubernetes in local mode (a directory of manifests)", () => {
  it.scoped("serves multi-document YAML, with `default` for objects without a namespace", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      yield* writeManifests(dir, manifests)
      const kubernetes = yield* local(dir)

      const s3 = yield* kubernetes.getSecret("db", "pgbackrest-s3-secret")
      assert.strictEqual(Redacted.value(s3.ACCESS_KEY_ID ?? Redacted.make("")), "minioadmin")
      assert.strictEqual(Redacted.value(s3.ACCESS_SECRET_KEY ?? Redacted.make("")), SECRET_ACCESS_KEY)
      const cipher = yield* kubernetes.getSecret("default", "cipher")
      assert.strictEqual(
        Redacted.value(cipher.passphrase ?? Redacted.make("")),
        "correct horse battery staple",
      )

      const readStanza = yield* kubernetes.getStanza("db", "stanza-sample")
      assert.deepInclude(readStanza, { apiVersion: "pgbackrest.dalibo.com/v1", kind: "Stanza" })
      const readCluster = yield* kubernetes.getCluster("default", "cluster-demo")
      assert.deepInclude(readCluster, { kind: "Cluster" })

      const missing = yield* Effect.flip(kubernetes.getCluster("db", "cluster-demo"))
      assert.strictEqual(missing.message, "Cluster db/cluster-demo not found")
    }),
  )

  it.scoped("a malformed manifest is InvalidRequest naming the file and the document", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      yield* writeManifests(dir, {
        "broken.yaml": `apiVersion: v1
kind: Secret
metadata:
  name: fine
stringData:
  password: ${SECRET_ACCESS_KEY}
---
apiVersion: pgbackrest.dalibo.com/v1
kind: Stanza
metadata:
  namespace: db
`,
      })
      const error = yield* Effect.flip(local(dir))
      assert.strictEqual(error._tag, "InvalidRequest")
      assert.include(error.message, "broken.yaml (document 2)")
      assert.include(error.message, "metadata.name is missing")
    }),
  )

  it.scoped("invalid YAML is InvalidRequest with the file and line, without quoting the file", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      yield* writeManifests(dir, {
        "secret.yaml": `apiVersion: v1
kind: Secret
metadata:
  name: s3
stringData:
  password: "${SECRET_ACCESS_KEY}
  other: [
`,
      })
      const error = yield* Effect.flip(local(dir))
      assert.strictEqual(error._tag, "InvalidRequest")
      assert.include(error.message, "secret.yaml (document 1)")
      assert.include(error.message, "not valid YAML")
      assert.notInclude(error.message, SECRET_ACCESS_KEY)
    }),
  )

  it.scoped("the same object twice is an error naming both places", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      yield* writeManifests(dir, { "a.yaml": manifests["cluster.yaml"], "b.yaml": manifests["cluster.yaml"] })
      const error = yield* Effect.flip(local(dir))
      assert.include(error.message, "b.yaml (document 1)")
      assert.include(error.message, "Cluster default/cluster-demo is already defined in a.yaml (document 1)")
    }),
  )

  it.scoped("status patches merge in memory and are written to .status/<ns>/<plural>/<name>.json", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      yield* writeManifests(dir, manifests)
      const kubernetes = yield* local(dir)
      yield* kubernetes.patchStanzaStatus("db", "stanza-sample", {
        conditions: [{ type: "Ready", status: "True" }],
      })
      yield* kubernetes.patchStanzaStatus("db", "stanza-sample", {
        lastArchivedWAL: "000000010000000000000001",
      })

      const expected = {
        conditions: [{ type: "Ready", status: "True" }],
        lastArchivedWAL: "000000010000000000000001",
      }
      const readStanza = yield* kubernetes.getStanza("db", "stanza-sample")
      assert.deepInclude(readStanza, { status: expected })
      const file = path.join(dir, ".status", "db", "stanzas", "stanza-sample.json")
      const written: unknown = JSON.parse(yield* Effect.promise(() => fs.readFile(file, "utf8")))
      assert.deepStrictEqual(written, expected)

      const absent = yield* Effect.flip(kubernetes.patchStanzaStatus("db", "nope", {}))
      assert.strictEqual(absent._tag, "NotFound")
    }),
  )

  it.scoped("a missing directory is InvalidRequest naming it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const error = yield* Effect.flip(local(path.join(dir, "absent")))
      assert.strictEqual(error._tag, "InvalidRequest")
      assert.include(error.message, "absent")
    }),
  )
})

describe("Kubernetes.Fake", () => {
  it.effect("creates, replaces with resourceVersion checks, and reads back", () =>
    Effect.gen(function* () {
      const kubernetes = yield* Kubernetes
      const role = {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "r" },
        rules: [],
      }
      yield* kubernetes.create(Resources.role, "db", role)
      const again = yield* Effect.flip(kubernetes.create(Resources.role, "db", role))
      assert.include(again.message, "conflict: Role db/r already exists")
      const stale = yield* Effect.flip(
        kubernetes.replace(Resources.role, "db", "r", {
          ...role,
          metadata: { name: "r", resourceVersion: "7" },
        }),
      )
      assert.include(stale.message, "conflict")
      yield* kubernetes.replace(Resources.role, "db", "r", { ...role, rules: [{ verbs: ["get"] }] })
      assert.deepInclude(yield* kubernetes.get(Resources.role, "db", "r"), { rules: [{ verbs: ["get"] }] })
      const stanzaRead = yield* kubernetes.getStanza("db", "stanza-sample")
      assert.deepInclude(stanzaRead, { spec: stanza.spec })
    }).pipe(Effect.provide(Kubernetes.Fake([stanza]))),
  )
})
