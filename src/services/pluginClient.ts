import { Effect, type Scope } from "effect"
import { type Channel, ClientError, createChannel, createClient, Status } from "nice-grpc"
import { CallFailed } from "../domain/errors.js"
import { HealthCheckResponse_ServingStatus, HealthDefinition } from "../generated/health.js"

/** A gRPC channel to the plugin's unix socket, closed with the scope. */
export const socketChannel = (socketPath: string): Effect.Effect<Channel, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => createChannel(`unix://${socketPath}`)),
    (channel) => Effect.sync(() => channel.close()),
  )

/** Runs one client call as an Effect: interruption aborts the call, failures keep their gRPC code. */
export const call = <A>(
  address: string,
  rpc: string,
  send: (signal: AbortSignal) => Promise<A>,
): Effect.Effect<A, CallFailed> =>
  Effect.tryPromise({
    try: send,
    catch: (error) =>
      error instanceof ClientError
        ? new CallFailed({ address, rpc, code: error.code, reason: error.details })
        : new CallFailed({
            address,
            rpc,
            code: Status.UNKNOWN,
            reason: error instanceof Error ? error.message : String(error),
          }),
  })

/**
 * What the sidecar's startupProbe runs: succeeds only when the socket answers the gRPC health check
 * with SERVING within `timeoutMs`.
 */
export const checkHealth = (socketPath: string, timeoutMs: number): Effect.Effect<void, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const channel = yield* socketChannel(socketPath)
      const client = createClient(HealthDefinition, channel)
      const address = `unix:${socketPath}`
      const rpc = "grpc.health.v1.Health/Check"
      const response = yield* call(address, rpc, (signal) => client.check({ service: "" }, { signal })).pipe(
        Effect.timeoutFail({
          duration: timeoutMs,
          onTimeout: () =>
            new CallFailed({
              address,
              rpc,
              code: Status.DEADLINE_EXCEEDED,
              reason: `no answer within ${timeoutMs} ms`,
            }),
        }),
      )
      if (response.status !== HealthCheckResponse_ServingStatus.SERVING) {
        return yield* new CallFailed({
          address,
          rpc,
          code: Status.UNAVAILABLE,
          reason: `status is ${HealthCheckResponse_ServingStatus[response.status] ?? response.status}`,
        })
      }
    }),
  )
