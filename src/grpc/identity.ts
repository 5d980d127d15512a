import { Context, Effect } from "effect"
import { pluginMetadata } from "../domain/plugin.js"
import {
  type GetPluginCapabilitiesResponse,
  type GetPluginMetadataResponse,
  type IdentityDefinition,
  PluginCapability_Service_Type,
  type ProbeResponse,
} from "../generated/identity.js"
import type { EffectHandlers } from "./handlers.js"

/**
 * The CNPG-I services a role really serves, as advertised by GetPluginCapabilities. The role's layer
 * derives it from the services it registers, so the operator is never promised an RPC that is absent.
 */
export class ServedCapabilities extends Context.Tag("cnpg-pgbackrest/ServedCapabilities")<
  ServedCapabilities,
  ReadonlyArray<PluginCapability_Service_Type>
>() {}

/** CNPG-I Identity: who the plugin is, what it serves, and whether it is ready. */
export class Identity extends Effect.Service<Identity>()("cnpg-pgbackrest/Identity", {
  effect: Effect.gen(function* () {
    const served = yield* ServedCapabilities
    const metadata: GetPluginMetadataResponse = { ...pluginMetadata, manifest: {} }
    const capabilities: GetPluginCapabilitiesResponse = {
      capabilities: served
        .filter((type) => type !== PluginCapability_Service_Type.TYPE_UNSPECIFIED)
        .map((type) => ({ type: { $case: "service", value: { type } } })),
    }
    const ready: ProbeResponse = { ready: true }
    const handlers: EffectHandlers<typeof IdentityDefinition> = {
      getPluginMetadata: () => Effect.succeed(metadata),
      getPluginCapabilities: () => Effect.succeed(capabilities),
      // The operator calls Probe before every use of a connection; a server that answers is ready
      // (dependencies such as the object store are checked by the calls that need them).
      probe: () => Effect.succeed(ready),
    }
    return handlers
  }),
}) {}
