import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, type Scope } from "effect"
import { createServer, ServerError, type Status } from "nice-grpc"
import { type BackupCapability_RPC_Type, BackupDefinition, BackupResult } from "../../src/generated/backup.js"
import { IdentityDefinition, type PluginCapability_Service_Type } from "../../src/generated/identity.js"
import { type MetricsCapability_RPC_Type, MetricsDefinition } from "../../src/generated/metrics.js"
import { type OperatorCapability_RPC_Type, OperatorDefinition } from "../../src/generated/operator.js"
import {
  type OperatorLifecycleCapabilities,
  OperatorLifecycleDefinition,
} from "../../src/generated/operator_lifecycle.js"
import {
  type ReconcilerHooksCapability_Kind,
  ReconcilerHooksDefinition,
  ReconcilerHooksResult_Behavior,
} from "../../src/generated/reconciler.js"
import {
  type RestoreJobHooksCapability_Kind,
  RestoreJobHooksDefinition,
} from "../../src/generated/restore_job.js"
import { type WALCapability_RPC_Type, WALDefinition } from "../../src/generated/wal.js"

/** What a fake plugin advertises, and how its calls answer. */
export interface FakePluginOptions {
  /** The socket file name; GetPluginMetadata answers `metadataName` (default: the same). */
  readonly name: string
  readonly metadataName?: string
  readonly services: ReadonlyArray<PluginCapability_Service_Type>
  readonly walRpcs?: ReadonlyArray<WALCapability_RPC_Type>
  readonly backupRpcs?: ReadonlyArray<BackupCapability_RPC_Type>
  readonly restoreJobKinds?: ReadonlyArray<RestoreJobHooksCapability_Kind>
  readonly metricsRpcs?: ReadonlyArray<MetricsCapability_RPC_Type>
  /** A gRPC code that WAL.Restore fails with (default: it succeeds). */
  readonly restoreFails?: Status
  readonly lifecycle?: ReadonlyArray<OperatorLifecycleCapabilities>
  /** The JSON Patch LifecycleHook answers (default: empty). */
  readonly patch?: ReadonlyArray<Record<string, unknown>>
  readonly reconcilerKinds?: ReadonlyArray<ReconcilerHooksCapability_Kind>
  readonly behavior?: ReconcilerHooksResult_Behavior
  readonly operatorRpcs?: ReadonlyArray<OperatorCapability_RPC_Type>
  /** What SetStatusInCluster answers (default: empty). */
  readonly status?: string
}

/**
 * A plugin on a unix socket in `dir` that records every RPC it receives (`Service/Method`), in order,
 * into `calls`: what the port of CloudNativePG's client calls, and what it does not.
 */
export const fakePlugin = (
  dir: string,
  options: FakePluginOptions,
  calls: Array<string>,
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const record = (call: string) => {
        calls.push(`${options.name} ${call}`)
      }
      const rpc = <T>(types: ReadonlyArray<T> | undefined) =>
        (types ?? []).map((type) => ({ type: { $case: "rpc" as const, value: { type } } }))
      const server = createServer()
      server.add(IdentityDefinition, {
        getPluginMetadata: async () => {
          record("Identity/GetPluginMetadata")
          return {
            name: options.metadataName ?? options.name,
            version: "1.0.0",
            displayName: "",
            description: "",
            projectUrl: "",
            repositoryUrl: "",
            license: "",
            licenseUrl: "",
            maturity: "",
            vendor: "",
            manifest: {},
          }
        },
        getPluginCapabilities: async () => {
          record("Identity/GetPluginCapabilities")
          return {
            capabilities: options.services.map((type) => ({
              type: { $case: "service" as const, value: { type } },
            })),
          }
        },
        probe: async () => {
          record("Identity/Probe")
          return { ready: true }
        },
      })
      server.add(WALDefinition, {
        getCapabilities: async () => {
          record("WAL/GetCapabilities")
          return { capabilities: rpc(options.walRpcs) }
        },
        archive: async () => {
          record("WAL/Archive")
          return {}
        },
        restore: async () => {
          record("WAL/Restore")
          if (options.restoreFails !== undefined) {
            throw new ServerError(options.restoreFails, `${options.name} has no such file`)
          }
          return {}
        },
        status: async () => ({ firstWal: "", lastWal: "", additionalInformation: {} }),
        setFirstRequired: async () => ({}),
      })
      server.add(BackupDefinition, {
        getCapabilities: async () => {
          record("Backup/GetCapabilities")
          return { capabilities: rpc(options.backupRpcs) }
        },
        backup: async () => {
          record("Backup/Backup")
          // Every field at its default (an empty message decoded), but the id.
          return { ...BackupResult.decode(new Uint8Array()), backupId: "fake" }
        },
      })
      server.add(RestoreJobHooksDefinition, {
        getCapabilities: async () => {
          record("RestoreJobHooks/GetCapabilities")
          return { capabilities: (options.restoreJobKinds ?? []).map((kind) => ({ kind })) }
        },
        restore: async () => {
          record("RestoreJobHooks/Restore")
          return { restoreConfig: "", envs: [] }
        },
      })
      server.add(MetricsDefinition, {
        getCapabilities: async () => {
          record("Metrics/GetCapabilities")
          return { capabilities: rpc(options.metricsRpcs) }
        },
        define: async () => {
          record("Metrics/Define")
          return { metrics: [] }
        },
        collect: async () => {
          record("Metrics/Collect")
          return { metrics: [] }
        },
      })
      server.add(OperatorLifecycleDefinition, {
        getCapabilities: async () => {
          record("OperatorLifecycle/GetCapabilities")
          return { lifecycleCapabilities: [...(options.lifecycle ?? [])] }
        },
        lifecycleHook: async () => {
          record("OperatorLifecycle/LifecycleHook")
          return { jsonPatch: Buffer.from(options.patch === undefined ? "" : JSON.stringify(options.patch)) }
        },
      })
      const reconcile = (phase: string) => async () => {
        record(`ReconcilerHooks/${phase}`)
        return {
          behavior: options.behavior ?? ReconcilerHooksResult_Behavior.BEHAVIOR_CONTINUE,
          requeueAfter: 7,
        }
      }
      server.add(ReconcilerHooksDefinition, {
        getCapabilities: async () => {
          record("ReconcilerHooks/GetCapabilities")
          return { reconcilerCapabilities: (options.reconcilerKinds ?? []).map((kind) => ({ kind })) }
        },
        pre: reconcile("Pre"),
        post: reconcile("Post"),
      })
      server.add(OperatorDefinition, {
        getCapabilities: async () => {
          record("Operator/GetCapabilities")
          return { capabilities: rpc(options.operatorRpcs) }
        },
        validateClusterCreate: async () => ({ validationErrors: [] }),
        validateClusterChange: async () => ({ validationErrors: [] }),
        mutateCluster: async () => ({ jsonPatch: Buffer.alloc(0) }),
        deregister: async () => ({}),
        setStatusInCluster: async () => {
          record("Operator/SetStatusInCluster")
          return { jsonStatus: Buffer.from(options.status ?? "") }
        },
      })
      const socket = path.join(dir, options.name)
      fs.rmSync(socket, { force: true })
      await server.listen(`unix:${socket}`)
      return server
    }),
    (server) => Effect.promise(() => server.shutdown()),
  ).pipe(Effect.asVoid)
