import * as net from "node:net"
import * as path from "node:path"
import { FileSystem } from "@effect/platform"
import { Duration, Effect, Either, type Scope } from "effect"
import { createServer, type Server } from "nice-grpc"
import { ServerStartFailed, SocketInUse } from "../domain/errors.js"
import { callsInFlight, type Registration } from "./handlers.js"
import { checkMaterial, MutualTlsCredentials, readCertificates, watchCertificates } from "./tlsCredentials.js"

/** How long a forced shutdown waits for the cancelled calls to stop their pgBackRest (its kill grace is 10 s). */
export const CANCEL_GRACE = Duration.seconds(15)

/** How long a graceful shutdown may wait for calls in flight (an archive-push) before cancelling them. */
export const SHUTDOWN_GRACE = Duration.seconds(20)

const probeSocket = (socket: string): Effect.Effect<"live" | "stale" | "absent"> =>
  Effect.async<"live" | "stale" | "absent">((resume) => {
    const connection = net.connect(socket)
    connection.once("connect", () => {
      connection.destroy()
      resume(Effect.succeed("live"))
    })
    connection.once("error", (error: NodeJS.ErrnoException) => {
      connection.destroy()
      resume(Effect.succeed(error.code === "ENOENT" ? "absent" : "stale"))
    })
    return Effect.sync(() => connection.destroy())
  })

/**
 * Makes `socket` free to bind: a stale socket file (left by a killed sidecar) is removed, a socket
 * another live process answers on is never stolen, and a path that is not a socket is left alone.
 */
const claimSocket = (socket: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const failed = (reason: string) => new ServerStartFailed({ address: `unix:${socket}`, reason })
    yield* fs
      .makeDirectory(path.dirname(socket), { recursive: true })
      .pipe(Effect.mapError((e) => failed(e.message)))
    const info = yield* fs.stat(socket).pipe(Effect.option)
    if (info._tag === "None") {
      return
    }
    if (info.value.type !== "Socket") {
      return yield* failed(`the path exists and is not a socket (${info.value.type})`)
    }
    const state = yield* probeSocket(socket)
    if (state === "live") {
      return yield* new SocketInUse({ path: socket })
    }
    if (state === "stale") {
      yield* Effect.logInfo("removing stale plugin socket").pipe(Effect.annotateLogs({ socket }))
      yield* fs.remove(socket, { force: true }).pipe(Effect.mapError((e) => failed(e.message)))
    }
  })

/**
 * The largest request either server accepts, in bytes (grpc-js option `grpc.max_receive_message_length`);
 * a larger one is refused with RESOURCE_EXHAUSTED before it is buffered whole, and the server goes on
 * serving. CloudNativePG's requests carry Kubernetes objects as JSON (a Cluster, a Pod or Job, a
 * Backup), each at most 1.5 MiB because etcd refuses larger ones (`--max-request-bytes`): 8 MiB fits
 * the largest real request with room, where grpc-js's implicit default (4 MiB) might not.
 */
export const MAX_RECEIVE_MESSAGE_BYTES = 8 * 1024 * 1024

const startServer = (
  address: string,
  registrations: ReadonlyArray<Registration>,
  listen: (server: Server) => Promise<number>,
) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const server = createServer({ "grpc.max_receive_message_length": MAX_RECEIVE_MESSAGE_BYTES })
        for (const service of registrations) {
          service.addTo(server)
        }
        await listen(server)
        return server
      },
      catch: (error) =>
        new ServerStartFailed({ address, reason: error instanceof Error ? error.message : String(error) }),
    }),
    (server) =>
      // A release runs uninterruptibly: without `interruptible`, the timeout could not cut the wait
      // short, and a backup in flight held the sidecar (and WAL archiving with it) until it ended.
      Effect.promise(() => server.shutdown()).pipe(
        Effect.interruptible,
        Effect.timeout(SHUTDOWN_GRACE),
        Effect.catchAll(() =>
          Effect.logWarning("calls still running after the grace period; cancelling them").pipe(
            Effect.zipRight(Effect.sync(() => server.forceShutdown())),
            Effect.zipRight(
              Effect.promise(() => Promise.allSettled(callsInFlight())).pipe(
                Effect.interruptible,
                Effect.timeout(CANCEL_GRACE),
                Effect.ignore,
              ),
            ),
          ),
        ),
      ),
  )

/**
 * Serves the registrations on a unix socket for the lifetime of the scope. On scope close (SIGTERM
 * reaches here through the runtime's interruption) the server drains, then the socket file is removed
 * so the instance manager's next scan of /plugins does not find a dead plugin.
 */
export const serveUnixSocket = (
  socket: string,
  registrations: ReadonlyArray<Registration>,
): Effect.Effect<void, SocketInUse | ServerStartFailed, Scope.Scope | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    yield* claimSocket(socket)
    yield* Effect.addFinalizer(() => fs.remove(socket, { force: true }).pipe(Effect.ignore))
    yield* startServer(`unix:${socket}`, registrations, (server) => server.listen(`unix:${socket}`))
    yield* Effect.logInfo("serving CNPG-I").pipe(
      Effect.annotateLogs({ socket, services: registrations.map((service) => service.name) }),
    )
  })

/** The IPv4 wildcard for the dual-stack wildcard `[::]:port`; nothing for any other address. */
export const ipv4Fallback = (address: string): string | undefined => {
  const port = /^\[::\]:(\d+)$/.exec(address)?.[1]
  return port === undefined ? undefined : `0.0.0.0:${port}`
}

/** PEM files of the operator-facing server: its certificate and key, and the CA of allowed clients. */
export interface MutualTlsFiles {
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCa: string
}

/**
 * Serves the registrations over TCP with mutual TLS for the lifetime of the scope: the operator must
 * present a certificate that chains to `clientCa`, nothing older than TLS 1.3 is accepted, and no
 * request above {@link MAX_RECEIVE_MESSAGE_BYTES}. The PEM files are watched in the same scope: a
 * renewed certificate is served without a restart.
 */
export const serveMutualTls = (
  address: string,
  files: MutualTlsFiles,
  registrations: ReadonlyArray<Registration>,
  options: { readonly certificatePollInterval?: Duration.DurationInput } = {},
): Effect.Effect<number, ServerStartFailed, Scope.Scope | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const material = yield* readCertificates(files).pipe(
      Effect.flatMap((read) => Either.map(checkMaterial(read), () => read)),
      Effect.mapError((reason) => new ServerStartFailed({ address, reason })),
    )
    const credentials = new MutualTlsCredentials(material)
    let port = 0
    yield* startServer(address, registrations, async (server) => {
      try {
        port = await server.listen(address, credentials)
      } catch (error) {
        // `[::]` listens on IPv6 and IPv4 alike (an IPv6-only cluster must reach the plugin); a node
        // whose kernel has IPv6 disabled refuses it, and IPv4 is then all there is.
        const ipv4 = ipv4Fallback(address)
        if (ipv4 === undefined) throw error
        port = await server.listen(ipv4, credentials)
      }
      return port
    })
    yield* watchCertificates(files, credentials, material, options.certificatePollInterval)
    yield* Effect.logInfo("serving CNPG-I over mutual TLS").pipe(
      Effect.annotateLogs({ address, port, services: registrations.map((service) => service.name) }),
    )
    return port
  })
