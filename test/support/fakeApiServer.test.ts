import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Predicate } from "effect"
import { type FakeApiServer, fakeApiServer } from "./fakeApiServer.js"

const stanzas = "/apis/pgbackrest.dalibo.com/v1/namespaces/db/stanzas"
const roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/db/roles"

const stanza = {
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: "s", namespace: "db" },
  spec: { stanzaConfiguration: { name: "main" } },
  status: { phase: "seeded" },
}

/** Raw HTTP, so the fake is checked apart from the plugin's client. */
const call = (
  server: FakeApiServer,
  method: string,
  path: string,
  body?: unknown,
  options: { readonly contentType?: string; readonly token?: string } = {},
) =>
  Effect.promise(async () => {
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${options.token ?? server.token}`,
        ...(body === undefined ? {} : { "content-type": options.contentType ?? "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const json: unknown = await response.json()
    return { status: response.status, json }
  })

const field = (value: unknown, ...path: ReadonlyArray<string>): unknown =>
  path.reduce<unknown>((current, key) => (Predicate.isRecord(current) ? current[key] : undefined), value)

describe("fakeApiServer", () => {
  it.scopedLive("requires the bearer token", () =>
    Effect.gen(function* () {
      const server = yield* fakeApiServer()
      const reply = yield* call(server, "GET", `${stanzas}/s`, undefined, { token: "wrong" })
      assert.strictEqual(reply.status, 401)
      assert.strictEqual(field(reply.json, "kind"), "Status")
    }),
  )

  it.scopedLive("GET: object, list, and a 404 Status naming the object", () =>
    Effect.gen(function* () {
      const server = yield* fakeApiServer()
      yield* server.seed(stanza)
      const found = yield* call(server, "GET", `${stanzas}/s`)
      assert.strictEqual(found.status, 200)
      assert.strictEqual(field(found.json, "metadata", "namespace"), "db")
      const list = yield* call(server, "GET", stanzas)
      assert.strictEqual(field(list.json, "kind"), "StanzaList")
      const missing = yield* call(server, "GET", `${stanzas}/nope`)
      assert.strictEqual(missing.status, 404)
      assert.strictEqual(field(missing.json, "reason"), "NotFound")
      assert.strictEqual(field(missing.json, "details", "name"), "nope")
      const unknown = yield* call(server, "GET", "/apis/example.com/v1/namespaces/db/widgets/w")
      assert.strictEqual(unknown.status, 404)
    }),
  )

  it.scopedLive("POST creates (201) then answers 409 AlreadyExists; PUT checks resourceVersion", () =>
    Effect.gen(function* () {
      const server = yield* fakeApiServer()
      const role = {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "r" },
        rules: [],
      }
      const created = yield* call(server, "POST", roles, role)
      assert.strictEqual(created.status, 201)
      const version = field(created.json, "metadata", "resourceVersion")
      assert.isString(version)
      assert.strictEqual((yield* call(server, "POST", roles, role)).status, 409)

      const stale = yield* call(server, "PUT", `${roles}/r`, {
        ...role,
        metadata: { name: "r", resourceVersion: "1" },
      })
      assert.strictEqual(stale.status, 409)
      assert.strictEqual(field(stale.json, "reason"), "Conflict")
      const updated = yield* call(server, "PUT", `${roles}/r`, {
        ...role,
        metadata: { name: "r", resourceVersion: version },
        rules: [{ verbs: ["get"] }],
      })
      assert.strictEqual(updated.status, 200)
      assert.notStrictEqual(field(updated.json, "metadata", "resourceVersion"), version)
      assert.strictEqual((yield* call(server, "DELETE", `${roles}/r`)).status, 200)
      assert.strictEqual((yield* call(server, "GET", `${roles}/r`)).status, 404)
    }),
  )

  it.scopedLive("PATCH: merge patch only; /status changes only .status, the object keeps its .status", () =>
    Effect.gen(function* () {
      const server = yield* fakeApiServer()
      yield* server.seed(stanza)
      const jsonPatch = [{ op: "replace", path: "/status/phase", value: "x" }]
      const unsupported = yield* call(server, "PATCH", `${stanzas}/s/status`, jsonPatch, {
        contentType: "application/json-patch+json",
      })
      assert.strictEqual(unsupported.status, 415)

      const merge = { contentType: "application/merge-patch+json" }
      yield* call(server, "PATCH", `${stanzas}/s/status`, { status: { ready: true }, spec: { x: 1 } }, merge)
      yield* call(
        server,
        "PATCH",
        `${stanzas}/s`,
        { status: { phase: "ignored" }, metadata: { labels: { a: "b" } } },
        merge,
      )
      const stored = (yield* server.object(
        { group: "pgbackrest.dalibo.com", plural: "stanzas" },
        "db",
        "s",
      )).pipe(Option.getOrThrow)
      assert.deepStrictEqual(stored.status, { phase: "seeded", ready: true })
      assert.deepStrictEqual(stored.spec, stanza.spec)
      assert.deepStrictEqual(field(stored, "metadata", "labels"), { a: "b" })
    }),
  )

  it.scopedLive(
    "injected faults answer the next requests, then the store answers again; all are logged",
    () =>
      Effect.gen(function* () {
        const server = yield* fakeApiServer()
        yield* server.seed(stanza)
        yield* server.failNext({ path: `${stanzas}/s`, status: 503, times: 2 })
        assert.strictEqual((yield* call(server, "GET", `${stanzas}/s`)).status, 503)
        assert.strictEqual((yield* call(server, "GET", `${stanzas}/s`)).status, 503)
        assert.strictEqual((yield* call(server, "GET", `${stanzas}/s`)).status, 200)
        const log = yield* server.requests
        assert.deepStrictEqual(
          log.map((r) => r.method),
          ["GET", "GET", "GET"],
        )
      }),
  )

  it.scopedLive("a Secret's stringData is stored as base64 data", () =>
    Effect.gen(function* () {
      const server = yield* fakeApiServer()
      yield* server.seed({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: "x" },
        stringData: { k: "v" },
      })
      const secret = yield* call(server, "GET", "/api/v1/namespaces/default/secrets/x")
      assert.deepStrictEqual(field(secret.json, "data"), { k: Buffer.from("v").toString("base64") })
      assert.isUndefined(field(secret.json, "stringData"))
    }),
  )
})
