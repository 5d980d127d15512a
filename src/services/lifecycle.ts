import { Config, Context, Effect, Either, Layer } from "effect"
import { LOG_LEVELS } from "../domain/cli.js"
import { InvalidRequest } from "../domain/errors.js"
import { type SidecarSettingsShape, sidecarPatch } from "../domain/sidecar.js"
import {
  type OperatorLifecycleCapabilitiesResponse,
  type OperatorLifecycleDefinition,
  type OperatorLifecycleRequest,
  OperatorOperationType_Type,
} from "../generated/operator_lifecycle.js"
import type { EffectHandlers } from "../layers/grpc.js"

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

const parseJson = (field: string, bytes: Uint8Array): Either.Either<unknown, InvalidRequest> =>
  Either.try({
    try: (): unknown => JSON.parse(new TextDecoder().decode(bytes)),
    catch: () => new InvalidRequest({ field, reason: "is not valid JSON" }),
  })

/** CNPG-I OperatorLifecycle: injects the pgBackRest sidecar into instance Pods and full-recovery Jobs. */
export class Lifecycle extends Effect.Service<Lifecycle>()("cnpg-pgbackrest/Lifecycle", {
  effect: Effect.gen(function* () {
    const settings = yield* SidecarSettings
    const handlers: EffectHandlers<typeof OperatorLifecycleDefinition> = {
      getCapabilities: () => Effect.succeed(capabilities),
      lifecycleHook: Effect.fn("Lifecycle.lifecycleHook")(function* (request: OperatorLifecycleRequest) {
        const cluster = yield* parseJson("cluster_definition", request.clusterDefinition)
        const object = yield* parseJson("object_definition", request.objectDefinition)
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
