import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import type * as http from "node:http"
import * as https from "node:https"
import * as path from "node:path"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import { Deferred, Effect, Schema, type Scope } from "effect"
import { execOk, makeTempDir, type RigError, rigError } from "./exec.js"
import { type PluginDirs, updateStanza } from "./plugin.js"
import type { S3Endpoint } from "./s3.js"
import { SERVER_EXTENSIONS } from "./tls.js"

/**
 * What the proxy does with a request: forward it to s3rver (`pass`), or answer it itself with the error
 * S3 sends when it sheds load (`slowDown`: 503 SlowDown) or breaks (`internalError`: 500 InternalError),
 * or with those two in turn (`alternate`).
 */
export type FaultMode = "pass" | "slowDown" | "internalError" | "alternate"

/** Requests the proxy saw since it started. */
export interface ProxyCounts {
  /** Forwarded to s3rver and answered by it. */
  readonly forwarded: number
  /** Answered by the proxy with a 5xx error instead. */
  readonly failed: number
  /** Of `failed`, those answered 503 SlowDown. */
  readonly slowDown: number
  /** Of `failed`, those answered 500 InternalError. */
  readonly internalError: number
}

/**
 * An HTTPS proxy on localhost in front of a rig's S3 endpoint, whose certificate the endpoint's own CA
 * signed (so the Stanza's `endpointCA` verifies it too). Every request goes to s3rver unchanged (the
 * `host` header too: it is part of the SigV4 signature) until a fault mode says otherwise.
 */
export interface FaultProxy {
  /** pgBackRest 2.45 verifies the certificate against a host name, never an IP: so, localhost. */
  readonly host: "localhost"
  readonly port: number
  /** The Stanza `endpoint` that goes through the proxy. */
  readonly endpoint: string
  /** Takes effect for the next request; requests already forwarded run to their end. */
  readonly setMode: (mode: FaultMode) => Effect.Effect<void>
  readonly counts: () => Effect.Effect<ProxyCounts>
}

/** The S3 error documents, as AWS sends them (`application/xml`, an `Error` element). */
const S3_ERRORS = {
  slowDown: { status: 503, code: "SlowDown", message: "Please reduce your request rate." },
  internalError: {
    status: 500,
    code: "InternalError",
    message: "We encountered an internal error. Please try again.",
  },
} as const

const xmlEscape = (text: string): string =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;")

const errorBody = (kind: keyof typeof S3_ERRORS, resource: string, requestId: string): string => {
  const error = S3_ERRORS[kind]
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${error.code}</Code><Message>${error.message}</Message>` +
    `<Resource>${xmlEscape(resource)}</Resource><RequestId>${requestId}</RequestId></Error>`
  )
}

/**
 * A key and a certificate for localhost signed by the CA of `s3` (`tls.ts` leaves its key next to the CA
 * certificate). An explicit serial keeps openssl from writing a serial file into the endpoint's directory.
 */
const signLocalhost = (
  s3: S3Endpoint,
  dir: string,
): Effect.Effect<
  { readonly key: Buffer; readonly cert: Buffer },
  RigError,
  CommandExecutor.CommandExecutor
> =>
  Effect.gen(function* () {
    const caDir = path.dirname(s3.caFile)
    const openssl = (...args: ReadonlyArray<string>) =>
      execOk(`openssl ${args[0] ?? ""}`, "openssl", args, { cwd: dir })
    yield* openssl(
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      "proxy.key",
      "-out",
      "proxy.csr",
      "-subj",
      "/CN=localhost",
    )
    yield* Effect.try({
      try: () => fs.writeFileSync(path.join(dir, "proxy.ext"), SERVER_EXTENSIONS),
      catch: (error) => rigError("proxy.ext", String(error)),
    })
    yield* openssl(
      "x509",
      "-req",
      "-in",
      "proxy.csr",
      "-CA",
      s3.caFile,
      "-CAkey",
      path.join(caDir, "ca.key"),
      "-set_serial",
      `0x${randomBytes(8).toString("hex")}`,
      "-out",
      "proxy.crt",
      "-days",
      "2",
      "-extfile",
      "proxy.ext",
    )
    return yield* Effect.try({
      try: () => ({
        key: fs.readFileSync(path.join(dir, "proxy.key")),
        cert: fs.readFileSync(path.join(dir, "proxy.crt")),
      }),
      catch: (error) => rigError("proxy certificate", String(error)),
    })
  })

/**
 * Starts the proxy in front of `s3` on 127.0.0.1 (a free port), in `pass` mode. Closing the scope closes
 * the server, its connections and those to s3rver, and removes its certificate.
 */
export const make = (
  s3: S3Endpoint,
): Effect.Effect<
  FaultProxy,
  RigError,
  Scope.Scope | CommandExecutor.CommandExecutor | FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const dir = yield* makeTempDir("rig-fault-proxy-", { mode: 0o700 })
    const { key, cert } = yield* signLocalhost(s3, dir)
    const ca = yield* Effect.try({
      try: () => fs.readFileSync(s3.caFile),
      catch: (error) => rigError("s3 CA", String(error)),
    })

    let mode: FaultMode = "pass"
    let alternate: keyof typeof S3_ERRORS = "slowDown"
    const counts = { forwarded: 0, failed: 0, slowDown: 0, internalError: 0 }
    let requestNumber = 0

    const upstreamAgent = new https.Agent({ keepAlive: true })

    const fail = (
      request: http.IncomingMessage,
      response: http.ServerResponse,
      kind: keyof typeof S3_ERRORS,
    ) => {
      counts.failed += 1
      counts[kind] += 1
      requestNumber += 1
      const requestId = `FAULT${String(requestNumber).padStart(11, "0")}`
      const body = errorBody(kind, (request.url ?? "/").split("?")[0] ?? "/", requestId)
      // Read the request body first (a PUT of a segment): answering while the client still sends it
      // would have Node close the connection, which is another fault than the one injected here.
      request.resume()
      request.once("end", () => {
        response.writeHead(S3_ERRORS[kind].status, {
          "content-type": "application/xml",
          "content-length": Buffer.byteLength(body),
          "x-amz-request-id": requestId,
          date: new Date().toUTCString(),
        })
        response.end(request.method === "HEAD" ? undefined : body)
      })
    }

    const forward = (request: http.IncomingMessage, response: http.ServerResponse) => {
      const upstream = https.request(
        {
          host: "127.0.0.1",
          port: s3.port,
          method: request.method,
          path: request.url,
          headers: request.headers,
          agent: upstreamAgent,
          ca,
          servername: "localhost",
        },
        (answer) => {
          counts.forwarded += 1
          response.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(response)
        },
      )
      // s3rver went away or reset the connection: pass that on as a reset, as a real network would.
      upstream.once("error", () => {
        request.socket.destroy()
      })
      request.pipe(upstream)
    }

    const server = https.createServer({ key, cert }, (request, response) => {
      switch (mode) {
        case "pass":
          return forward(request, response)
        case "alternate": {
          const kind = alternate
          alternate = kind === "slowDown" ? "internalError" : "slowDown"
          return fail(request, response, kind)
        }
        default:
          return fail(request, response, mode)
      }
    })
    // A client that drops its connection mid-request is not the test's concern.
    server.on("clientError", (_error, socket) => socket.destroy())

    const port = yield* Effect.acquireRelease(
      Effect.async<number, RigError>((resume) => {
        server.once("error", (error) => resume(Effect.fail(rigError("fault proxy", error.message))))
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          resume(
            typeof address === "object" && address !== null
              ? Effect.succeed(address.port)
              : Effect.fail(rigError("fault proxy", "no port was assigned")),
          )
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
          server.closeAllConnections()
          upstreamAgent.destroy()
        }),
    )

    return {
      host: "localhost",
      port,
      endpoint: `localhost:${port}`,
      setMode: (next) =>
        Effect.sync(() => {
          mode = next
        }),
      counts: () => Effect.sync(() => ({ ...counts })),
    } satisfies FaultProxy
  })

const Repositories = Schema.Array(Schema.Record({ key: Schema.String, value: Schema.Unknown }))

/** The Stanza's S3 repository (the rig's only one) reached through `endpoint` instead of s3rver's port. */
const routeStanzaThrough = (dirs: PluginDirs, endpoint: string): Effect.Effect<void, RigError> =>
  Effect.gen(function* () {
    let rewritten = false
    yield* updateStanza(dirs, (config) => {
      const repositories = Schema.decodeUnknownSync(Repositories)(config.s3Repositories)
      rewritten = repositories.length === 1
      return { ...config, s3Repositories: repositories.map((repo) => ({ ...repo, endpoint })) }
    })
    if (!rewritten) {
      return yield* Effect.fail(rigError("fault proxy", "the Stanza does not have exactly one S3 repository"))
    }
  })

/**
 * A `prepare` step of the e2e setups: a proxy in front of the setup's S3 endpoint, the Stanza's S3
 * repository routed through it before anything reads the Stanza, and the proxy handed over in `proxied`.
 */
export const interposeOn =
  (proxied: Deferred.Deferred<FaultProxy>) =>
  (setup: { readonly s3: S3Endpoint; readonly dirs: PluginDirs }) =>
    Effect.gen(function* () {
      const proxy = yield* make(setup.s3)
      yield* routeStanzaThrough(setup.dirs, proxy.endpoint)
      yield* Deferred.succeed(proxied, proxy)
    })
