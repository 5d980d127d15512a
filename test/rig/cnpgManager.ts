import * as fs from "node:fs"
import * as http from "node:http"
import * as http2 from "node:http2"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import { type RigError, rigError } from "./exec.js"
import { PROJECT_ROOT } from "./paths.js"

/**
 * CloudNativePG's own instance manager as a test peer: the `manager` binaries that
 * scripts/build-cnpg-manager.sh builds (one per version pinned under test/manager/), the few endpoints
 * of the instance manager's local web server that `wal-archive` and `wal-restore` call, and a recorder
 * of the RPCs a plugin socket receives.
 */

/** The versions pinned under test/manager/, oldest first. */
export const managerVersions: ReadonlyArray<string> = fs
  .readdirSync(path.join(PROJECT_ROOT, "test", "manager"))
  .filter((name) => /^v\d+\.\d+\.\d+$/.test(name))
  .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))

const cacheDir = process.env.CNPG_MANAGER_CACHE ?? path.join(os.homedir(), ".cache", "cnpg-manager")

/**
 * The built binary of `version`, copied where the postgres user (which runs archive_command) can run
 * it: the build cache is under root's home.
 */
export const managerBinary = (version: string, dir: string): Effect.Effect<string, RigError> =>
  Effect.try({
    try: () => {
      const built = path.join(cacheDir, "bin", version, "manager")
      if (!fs.existsSync(built)) {
        throw new Error(`${built} is missing: run scripts/build-cnpg-manager.sh (npm test does)`)
      }
      const copy = path.join(dir, `manager-${version}`)
      fs.copyFileSync(built, copy)
      fs.chmodSync(copy, 0o755)
      return copy
    },
    catch: (error) => rigError(`CloudNativePG manager ${version}`, String(error)),
  })

/** What `wal-archive` reported to the instance manager after each attempt: `{}` or `{"error": ...}`. */
export interface ArchiveCondition {
  readonly error?: string
}

export interface InstanceManagerServer {
  /** The Cluster `GET /cache/cluster` answers from now on. */
  readonly serve: (cluster: unknown) => Effect.Effect<void>
  readonly conditions: () => Effect.Effect<ReadonlyArray<ArchiveCondition>>
}

/**
 * The instance manager's local web server, as far as `manager wal-archive` and `wal-restore` use it:
 * `GET /cache/cluster` and `POST /cluster/status/condition/wal/archive` on localhost:8010, a port fixed
 * in CloudNativePG's code (so one at a time: the e2e files run serially). Anything else is 404, which
 * the commands read as a cache miss.
 */
export const instanceManagerServer = (
  cluster: unknown,
): Effect.Effect<InstanceManagerServer, RigError, Scope.Scope> =>
  Effect.gen(function* () {
    let served = JSON.stringify(cluster)
    const conditions: Array<ArchiveCondition> = []
    const handler = (request: http.IncomingMessage, response: http.ServerResponse) => {
      const chunks: Array<Buffer> = []
      request.on("data", (chunk: Buffer) => chunks.push(chunk))
      request.on("end", () => {
        if (request.method === "GET" && request.url === "/cache/cluster") {
          response.writeHead(200, { "content-type": "application/json" })
          response.end(served)
          return
        }
        if (request.method === "POST" && request.url === "/cluster/status/condition/wal/archive") {
          const body: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}")
          conditions.push(
            typeof body === "object" && body !== null && "error" in body && typeof body.error === "string"
              ? { error: body.error }
              : {},
          )
          response.writeHead(200)
          response.end("OK")
          return
        }
        response.writeHead(404)
        response.end()
      })
    }
    // `localhost` may resolve to either loopback address: listen on both.
    for (const host of ["127.0.0.1", "::1"]) {
      const server = http.createServer(handler)
      yield* Effect.acquireRelease(
        Effect.async<void, RigError>((resume) => {
          server.once("error", (error) =>
            resume(Effect.fail(rigError("instance manager web server", `${host}:8010: ${error.message}`))),
          )
          server.listen(8010, host, () => resume(Effect.void))
        }),
        () =>
          Effect.async<void>((resume) => {
            server.close(() => resume(Effect.void))
            server.closeAllConnections()
          }),
      )
    }
    return {
      serve: (next) =>
        Effect.sync(() => {
          served = JSON.stringify(next)
        }),
      conditions: () => Effect.sync(() => [...conditions]),
    }
  })

/** One RPC a plugin socket received: on which connection (numbered from 1), and its method path. */
export interface RecordedCall {
  readonly connection: number
  readonly path: string
}

export interface RpcRecorder {
  /** The directory to give the client as its plugin socket directory. */
  readonly dir: string
  /** The calls since the last `take`, in order, and forgets them. */
  readonly take: () => Effect.Effect<ReadonlyArray<RecordedCall>>
}

/**
 * A socket `<dir>/<name>` in front of a plugin's socket that records every RPC (its HTTP/2 `:path`) and
 * the connection it came on, and forwards each call unchanged: headers, messages and trailers. The
 * client cannot tell it from the plugin; the test sees what the plugin received.
 */
export const rpcRecorder = (target: string, dir: string): Effect.Effect<RpcRecorder, RigError, Scope.Scope> =>
  Effect.gen(function* () {
    const socket = path.join(dir, path.basename(target))
    let recorded: Array<RecordedCall> = []
    let connections = 0
    const server = http2.createServer()
    server.on("session", (session) => {
      connections += 1
      const connection = connections
      const upstream = http2.connect("http://localhost", { createConnection: () => net.connect(target) })
      upstream.on("error", () => session.destroy())
      session.on("close", () => upstream.close())
      session.on("stream", (stream, headers) => {
        recorded.push({ connection, path: String(headers[":path"]) })
        const forwarded: http2.OutgoingHttpHeaders = {}
        for (const [key, value] of Object.entries(headers)) {
          if (!key.startsWith(":") || key === ":method" || key === ":path") forwarded[key] = value
        }
        const call = upstream.request(forwarded)
        stream.pipe(call)
        call.on("response", (answer, flags) => {
          const head: http2.OutgoingHttpHeaders = {}
          for (const [key, value] of Object.entries(answer)) {
            if (!key.startsWith(":") || key === ":status") head[key] = value
          }
          // A trailers-only answer (a gRPC error) ends the stream with its headers.
          if ((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0) {
            stream.respond(head, { endStream: true })
            return
          }
          stream.respond(head, { waitForTrailers: true })
          let trailers: http2.OutgoingHttpHeaders = {}
          call.on("trailers", (received) => {
            trailers = { ...received }
          })
          stream.on("wantTrailers", () => stream.sendTrailers(trailers))
          call.pipe(stream)
        })
        call.on("error", () => stream.destroy())
        stream.on("error", () => call.destroy())
      })
    })
    yield* Effect.acquireRelease(
      Effect.async<void, RigError>((resume) => {
        server.once("error", (error) => resume(Effect.fail(rigError("RPC recorder", error.message))))
        server.listen(socket, () => {
          // The postgres user runs CloudNativePG's commands: connecting needs write access to the socket.
          fs.chmodSync(socket, 0o777)
          resume(Effect.void)
        })
      }),
      () =>
        Effect.async<void>((resume) => {
          server.close(() => resume(Effect.void))
        }),
    )
    return {
      dir,
      take: () =>
        Effect.sync(() => {
          const taken = recorded
          recorded = []
          return taken
        }),
    }
  })
