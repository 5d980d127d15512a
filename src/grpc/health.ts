import { ServerError, Status } from "nice-grpc"
import {
  HealthCheckResponse_ServingStatus,
  HealthDefinition,
  type HealthServiceImplementation,
} from "../generated/health.js"
import { type Registration, registration } from "./handlers.js"

/**
 * The standard gRPC health service (grpc.health.v1) for the sidecar's startupProbe. It answers SERVING
 * for the server as a whole ("") and for each served service while the server accepts calls; once a
 * graceful shutdown starts, grpc-js refuses new calls, which a probe reads as unhealthy.
 */
export const healthRegistration = (services: ReadonlyArray<string>): Registration => {
  const known = new Set(["", ...services])
  const statusOf = (service: string): HealthCheckResponse_ServingStatus => {
    if (!known.has(service)) {
      throw new ServerError(Status.NOT_FOUND, `unknown service "${service}"`)
    }
    return HealthCheckResponse_ServingStatus.SERVING
  }
  const implementation: HealthServiceImplementation = {
    check: async (request) => ({ status: statusOf(request.service) }),
    // Status never changes while the server runs: send it once, then hold the stream until the client
    // goes away or the server shuts down.
    watch: async function* (request, context) {
      yield { status: statusOf(request.service) }
      await new Promise<void>((resolve) => {
        if (context.signal.aborted) {
          resolve()
        }
        context.signal.addEventListener("abort", () => resolve(), { once: true })
      })
    },
  }
  return registration(HealthDefinition.fullName, HealthDefinition, implementation)
}
