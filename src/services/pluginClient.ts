import * as fs from "node:fs"
import * as path from "node:path"
import { loadYaml } from "@kubernetes/client-node"
import { Effect, type Scope } from "effect"
import { type Channel, ClientError, createChannel, createClient, Status } from "nice-grpc"
import { CallFailed } from "../domain/errors.js"
import { HealthCheckResponse_ServingStatus, HealthDefinition } from "../generated/health.js"
import { WALDefinition } from "../generated/wal.js"

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

/** Reads a Cluster manifest (YAML or JSON) and returns it as the JSON bytes the operator would send. */
export const clusterDefinitionFromFile = (file: string): Effect.Effect<Buffer, CallFailed> =>
  Effect.try({
    try: () => {
      const object = loadYaml<unknown>(fs.readFileSync(file, "utf8"))
      if (typeof object !== "object" || object === null || !("kind" in object) || object.kind !== "Cluster") {
        throw new Error("the manifest is not a Cluster")
      }
      return Buffer.from(JSON.stringify(object))
    },
    catch: (error) =>
      new CallFailed({
        address: file,
        rpc: "read cluster manifest",
        code: Status.INVALID_ARGUMENT,
        reason: error instanceof Error ? error.message : String(error),
      }),
  })

/**
 * `client wal-archive`: what CloudNativePG's `wal-archive` does, as an archive_command. The WAL path
 * is made absolute against the working directory (PostgreSQL runs archive_command in PGDATA, where
 * `%p` is relative), then sent in one WAL.Archive call; success means pgBackRest archived it.
 */
export const archiveWal = (
  socketPath: string,
  clusterFile: string,
  walPath: string,
): Effect.Effect<void, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const clusterDefinition = yield* clusterDefinitionFromFile(clusterFile)
      const client = createClient(WALDefinition, yield* socketChannel(socketPath))
      yield* call(`unix:${socketPath}`, "cnpgi.wal.v1.WAL/Archive", (signal) =>
        client.archive(
          { clusterDefinition, sourceFileName: path.resolve(walPath), parameters: {} },
          { signal },
        ),
      )
    }),
  )
