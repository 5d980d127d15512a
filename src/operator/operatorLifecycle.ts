import { Config, Context, Effect, Layer } from "effect"
import { parseJsonBytes } from "../domain/decode.js"
import { LOG_LEVELS } from "../domain/logLine.js"
import { type SidecarSettingsShape, sidecarPatch } from "../domain/sidecar.js"
import {
  type OperatorLifecycleCapabilitiesResponse,
  type OperatorLifecycleDefinition,
  type OperatorLifecycleRequest,
  OperatorOperationType_Type,
} from "../generated/operator_lifecycle.js"
import type { EffectHandlers } from "../grpc/handlers.js"

/** The sidecar the operator-side plugin injects; read once from the Deployment's environment. */
export class SidecarSettings extends Context.Tag("cnpg-pgbackrest/SidecarSettings")<
  SidecarSettings,
  SidecarSettingsShape
>() {
  static readonly fromConfig = Layer.effect(
    SidecarSettings,
    Config.all({
      image: Config.nonEmptyString("SIDECAR_IMAGE").pipe(
        Config.withDescription(
          "image of the pgbackrest-plugin sidecar injected into PostgreSQL pods and full-recovery Jobs",
        ),
      ),
      logLevel: Config.literal(...LOG_LEVELS)("SIDECAR_LOG_LEVEL").pipe(
        Config.withDefault("info"),
        Config.withDescription("--log-level of the injected sidecar"),
      ),
    }),
  )
}

const capabilities: OperatorLifecycleCapabilitiesResponse = {
  lifecycleCapabilities: [
    // EVALUATE is the operator asking what a fresh instance Pod would look like (to detect outdated
    // Pods); CREATE is the real creation. Both get the same, idempotent patch.
    {
      group: "",
      kind: "Pod",
      operationTypes: [
        { type: OperatorOperationType_Type.TYPE_CREATE },
        { type: OperatorOperationType_Type.TYPE_EVALUATE },
      ],
    },
    { group: "batch", kind: "Job", operationTypes: [{ type: OperatorOperationType_Type.TYPE_CREATE }] },
  ],
}

/** CNPG-I OperatorLifecycle: injects the pgBackRest sidecar into instance Pods and full-recovery Jobs. */
export class Lifecycle extends Effect.Service<Lifecycle>()("cnpg-pgbackrest/Lifecycle", {
  effect: Effect.gen(function* () {
    const settings = yield* SidecarSettings
    const handlers: EffectHandlers<typeof OperatorLifecycleDefinition> = {
      getCapabilities: () => Effect.succeed(capabilities),
      lifecycleHook: Effect.fn("Lifecycle.lifecycleHook")(function* (request: OperatorLifecycleRequest) {
        const cluster = yield* parseJsonBytes(request.clusterDefinition, "cluster_definition")
        const object = yield* parseJsonBytes(request.objectDefinition, "object_definition")
        const operations = yield* sidecarPatch(cluster, object, settings)
        yield* Effect.logDebug("lifecycle hook").pipe(
          Effect.annotateLogs({
            operation: OperatorOperationType_Type[request.operationType?.type ?? 0],
            patchOperations: operations.length,
          }),
        )
        // Always a JSON array; `[]` (no change) applies as a no-op on the operator's side.
        return { jsonPatch: Buffer.from(JSON.stringify(operations)) }
      }),
    }
    return handlers
  }),
}) {}
