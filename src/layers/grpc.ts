import * as net from "node:net"
import * as path from "node:path"
import { FileSystem } from "@effect/platform"
import { Cause, Duration, Effect, Either, Exit, Option, Runtime, type Scope } from "effect"
import {
  type CompatServiceDefinition,
  createServer,
  type Server,
  ServerError,
  type ServiceImplementation,
  Status,
} from "nice-grpc"
import { type PluginError, ServerStartFailed, SocketInUse } from "../domain/errors.js"
import { grpcStatusOf } from "../domain/status.js"
import { checkMaterial, MutualTlsCredentials, readCertificates, watchCertificates } from "./tlsCredentials.js"

/**
 * The bridge between nice-grpc and Effect. Every handler runs its program on the one runtime the
 * role's layer built, with the call's AbortSignal: a cancelled or expired call interrupts the fiber,
 * which kills whatever child process it started. The Exit becomes a `ServerError` here and only here.
 */
export const makeRunner =
  <R>(runtime: Runtime.Runtime<R>) =>
  <A>(rpc: string, program: Effect.Effect<A, PluginError, R>, signal: AbortSignal): Promise<A> =>
    tracked(
      Runtime.runPromiseExit(runtime)(
        program.pipe(
          Effect.tapErrorCause((cause) =>
            Cause.isInterruptedOnly(cause)
              ? Effect.void
              : Cause.isFailure(cause)
                ? // NOT_FOUND is an answer, not a fault: recovery asks for files that do not exist
                  // (the next timeline's history, the segment after the end of the archive).
                  Option.exists(Cause.failureOption(cause), (error) => error._tag === "NotFound")
                  ? Effect.logDebug("call answered NOT_FOUND", Cause.pretty(cause))
                  : Effect.logWarning("call failed", Cause.squash(cause))
                : Effect.logError("call crashed", cause),
          ),
          Effect.tap(() => Effect.logDebug("call succeeded")),
          // A cancelled call interrupts the fiber from outside, which tapErrorCause never sees.
          Effect.onInterrupt(() => Effect.logInfo("call cancelled")),
          Effect.annotateLogs({ rpc }),
          Effect.withSpan(rpc),
        ),
        { signal },
      ),
    ).then((exit) => {
      if (Exit.isSuccess(exit)) {
        return exit.value
      }
      throw serverErrorOf(rpc, exit.cause)
    })

/**
 * Calls whose fiber has not ended. A forced shutdown cancels them, and each then stops its pgBackRest
 * (SIGTERM to the process group, SIGKILL after the kill grace) in its own fiber, outside the main one:
 * the server's release waits for them, or the process would exit with pgBackRest still running.
 */
const inFlight = new Set<Promise<unknown>>()

const tracked = <A>(promise: Promise<A>): Promise<A> => {
  inFlight.add(promise)
  const forget = () => {
    inFlight.delete(promise)
  }
  promise.then(forget, forget)
  return promise
}

/** How long a forced shutdown waits for the cancelled calls to stop their pgBackRest (its kill grace is 10 s). */
export const CANCEL_GRACE = Duration.seconds(15)

/** The gRPC status a failed handler reports: typed failures keep their code, the rest are generic. */
export const serverErrorOf = (rpc: string, cause: Cause.Cause<PluginError>): ServerError => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") {
    const status = grpcStatusOf(failure.value)
    return new ServerError(status.code, status.message)
  }
  if (Cause.isInterruptedOnly(cause)) {
    return new ServerError(Status.CANCELLED, `${rpc} was cancelled`)
  }
  // A defect's text may contain anything (paths, environment): keep it in the plugin's log only.
  return new ServerError(Status.INTERNAL, `${rpc} failed with an internal error; see the plugin logs`)
}

/** One service to serve: a generated definition and its implementation, typed together. */
export interface Registration {
  readonly name: string
  readonly addTo: (server: Server) => void
}

export const registration = <S extends CompatServiceDefinition>(
  name: string,
  definition: S,
  implementation: ServiceImplementation<S>,
): Registration => ({ name, addTo: (server) => server.add(definition, implementation) })

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
              Effect.promise(() => Promise.allSettled([...inFlight])).pipe(
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

interface UnaryMethod {
  readonly name: string
  readonly requestStream: false
  readonly responseStream: false
  readonly requestType: { decode(input: Uint8Array): unknown }
  readonly responseType: { decode(input: Uint8Array): unknown }
}

/**
 * The Effect-side shape of a unary gRPC service: one function per generated method, from the decoded
 * request to the response, failing only with `PluginError`. Checked against the generated definition,
 * so a renamed field or a missing RPC is a compile error, not a runtime surprise.
 */
export type EffectHandlers<D extends { readonly methods: Record<string, UnaryMethod> }, R = never> = {
  readonly [K in keyof D["methods"]]: (
    request: ReturnType<D["methods"][K]["requestType"]["decode"]>,
  ) => Effect.Effect<ReturnType<D["methods"][K]["responseType"]["decode"]>, PluginError, R>
}

/** Adapts Effect handlers to a nice-grpc implementation that runs every call on `runtime`. */
export const implement = <
  D extends CompatServiceDefinition & {
    readonly fullName: string
    readonly methods: Record<string, UnaryMethod>
  },
  R,
>(
  definition: D,
  handlers: EffectHandlers<D, R>,
  runtime: Runtime.Runtime<R>,
): Registration => {
  const run = makeRunner(runtime)
  const implementation: Record<
    string,
    (request: never, context: { signal: AbortSignal }) => Promise<unknown>
  > = {}
  for (const [key, method] of Object.entries(definition.methods)) {
    const handler: ((request: never) => Effect.Effect<unknown, PluginError, R>) | undefined = handlers[key]
    if (handler === undefined) {
      continue
    }
    implementation[key] = (request, context) =>
      run(`${definition.fullName}/${method.name}`, handler(request), context.signal)
  }
  // The record above has exactly the keys and signatures of EffectHandlers<D>, which mirror the
  // generated ServiceImplementation<D>; TypeScript cannot follow a mapped type built in a loop.
  return registration(definition.fullName, definition, implementation as unknown as ServiceImplementation<D>)
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
      port = await server.listen(address, credentials)
      return port
    })
    yield* watchCertificates(files, credentials, material, options.certificatePollInterval)
    yield* Effect.logInfo("serving CNPG-I over mutual TLS").pipe(
      Effect.annotateLogs({ address, port, services: registrations.map((service) => service.name) }),
    )
    return port
  })
