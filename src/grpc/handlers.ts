import { Cause, Effect, Exit, Option, Runtime } from "effect"
import {
  type CompatServiceDefinition,
  type Server,
  ServerError,
  type ServiceImplementation,
  Status,
} from "nice-grpc"
import type { PluginError } from "../domain/errors.js"
import { grpcStatusOf } from "./status.js"

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

/** The calls still running, for a shutdown that must wait until each has stopped its pgBackRest. */
export const callsInFlight = (): ReadonlyArray<Promise<unknown>> => [...inFlight]

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
