import * as http from "node:http"
import { KubeConfig } from "@kubernetes/client-node"
import { Effect, type Option, type Scope } from "effect"
import {
  type ApiResourceType,
  defaultResourceTypes,
  type JsonObject,
  qualified,
  verbOf,
} from "./fakeApiResources.js"
import { failure, makeObjectStore, parsePath, type Reply } from "./fakeApiStore.js"

export { type ApiResourceType, defaultResourceTypes } from "./fakeApiResources.js"

/** One request as the fake received it; `body` is parsed JSON when it parses, else the raw text. */
export interface LoggedRequest {
  readonly method: string
  readonly path: string
  readonly query: string
  readonly contentType: string | undefined
  readonly body: unknown
}

/** Answer the next `times` requests to `path` (any method unless given) with `status` instead. */
export interface Fault {
  readonly path: string
  readonly method?: string
  readonly status: number
  readonly times: number
  /** The message of the `kind: Status` body; a realistic one by default. */
  readonly message?: string
  /** A raw body instead of a `kind: Status` (e.g. a proxy's HTML page with status 200). */
  readonly rawBody?: string
}

/**
 * A kube-apiserver stand-in on 127.0.0.1: namespaced objects under `/api/v1` and `/apis/<group>/<version>`,
 * GET (object and list), POST, PUT, PATCH (merge patch only; 415 otherwise), DELETE, the `/status`
 * subresource, resourceVersion conflicts, `kind: Status` errors, a bearer token (401 without it),
 * fault injection and a request log.
 */
export interface FakeApiServer {
  readonly url: string
  readonly token: string
  /** Stores objects as `kubectl apply` would (apiVersion and kind pick the type; no namespace = default). */
  readonly seed: (...objects: ReadonlyArray<JsonObject>) => Effect.Effect<void>
  /** The stored object, as the server holds it. */
  readonly object: (
    type: { readonly group: string; readonly plural: string },
    namespace: string,
    name: string,
  ) => Effect.Effect<Option.Option<JsonObject>>
  readonly failNext: (fault: Fault) => Effect.Effect<void>
  readonly requests: Effect.Effect<ReadonlyArray<LoggedRequest>>
}

export const fakeApiServer = (
  options: { readonly token?: string; readonly types?: ReadonlyArray<ApiResourceType> } = {},
): Effect.Effect<FakeApiServer, never, Scope.Scope> =>
  Effect.gen(function* () {
    const token = options.token ?? "fake-service-account-token"
    const types = options.types ?? defaultResourceTypes
    const store = makeObjectStore(types)
    const faults: Array<Fault & { left: number }> = []
    const log: Array<LoggedRequest> = []

    const respond = (
      request: LoggedRequest,
      authorization: string | undefined,
      parseError: boolean,
    ): Reply => {
      if (authorization !== `Bearer ${token}`) {
        return failure(401, "Unauthorized")
      }
      const route = parsePath(request.path, types)
      const fault = faults.find(
        (f) => f.left > 0 && f.path === request.path && (f.method ?? request.method) === request.method,
      )
      if (fault !== undefined) {
        fault.left -= 1
        if (fault.rawBody !== undefined) {
          return { status: fault.status, body: fault.rawBody }
        }
        const verb = verbOf(request.method, route?.name !== undefined)
        const message =
          fault.message ??
          (fault.status === 403 && route !== undefined
            ? `${qualified(route.type)} "${route.name ?? ""}" is forbidden: User "system:serviceaccount:cnpg-system:cnpg-pgbackrest" cannot ${verb} resource "${route.type.plural}" in API group "${route.type.group}" in the namespace "${route.namespace}"`
            : `injected failure (HTTP ${fault.status})`)
        return failure(fault.status, message)
      }
      if (route === undefined) {
        return failure(404, "the server could not find the requested resource")
      }
      if (parseError) {
        return failure(400, "the request body is not valid JSON")
      }
      return store.handle(request.method, route, request.body, request.contentType)
    }

    const server = http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "http://fake")
        const text = Buffer.concat(chunks).toString("utf8")
        let body: unknown
        let parseError = false
        try {
          body = text === "" ? undefined : JSON.parse(text)
        } catch {
          body = text
          parseError = true
        }
        const request: LoggedRequest = {
          method: req.method ?? "GET",
          path: url.pathname,
          query: url.search,
          contentType: req.headers["content-type"],
          body,
        }
        log.push(request)
        const reply = respond(request, req.headers.authorization, parseError)
        const payload = typeof reply.body === "string" ? reply.body : JSON.stringify(reply.body)
        res.writeHead(reply.status, {
          "content-type": typeof reply.body === "string" ? "text/html" : "application/json",
        })
        res.end(payload)
      })
    })

    const port = yield* Effect.acquireRelease(
      Effect.async<number>((resume) => {
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : 0))
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          // The client keeps connections alive: close them or close() waits for their idle timeout.
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        }),
    )

    return {
      url: `http://127.0.0.1:${port}`,
      token,
      seed: (...objects) => Effect.sync(() => objects.forEach(store.seed)),
      object: (ref, namespace, name) => Effect.sync(() => store.get(ref, namespace, name)),
      failNext: (fault) => Effect.sync(() => void faults.push({ ...fault, left: fault.times })),
      requests: Effect.sync(() => [...log]),
    }
  })

/** A KubeConfig that points at the fake with its token, as a kubeconfig file or a service account would. */
export const kubeConfigFor = (server: { readonly url: string; readonly token: string }): KubeConfig => {
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromOptions({
    // client-node refuses plain http unless TLS verification is off; the fake speaks http on loopback.
    clusters: [{ name: "fake", server: server.url, skipTLSVerify: true }],
    users: [{ name: "plugin", token: server.token }],
    contexts: [{ name: "fake", cluster: "fake", user: "plugin", namespace: "default" }],
    currentContext: "fake",
  })
  return kubeConfig
}
