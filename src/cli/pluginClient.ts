import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { loadYaml } from "@kubernetes/client-node"
import { Effect, type Scope } from "effect"
import { type Channel, ClientError, createChannel, createClient, Status } from "nice-grpc"
import * as InstanceManager from "../cnpg/instanceManager.js"
import { CallFailed } from "../domain/errors.js"
import { PLUGIN_NAME } from "../domain/plugin.js"
import type { BackupResult } from "../generated/backup.js"
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

/** Reads a manifest (YAML or JSON) of the given kind, as `kubectl apply` would take it. */
export const readManifest = (
  file: string,
  kind: string,
): Effect.Effect<Record<string, unknown>, CallFailed> =>
  Effect.try({
    try: () => {
      const object = loadYaml<unknown>(fs.readFileSync(file, "utf8"))
      if (
        typeof object !== "object" ||
        object === null ||
        Array.isArray(object) ||
        !("kind" in object) ||
        object.kind !== kind
      ) {
        throw new Error(`the manifest is not a ${kind}`)
      }
      return { ...object }
    },
    catch: (error) =>
      new CallFailed({
        address: file,
        rpc: `read ${kind} manifest`,
        code: Status.INVALID_ARGUMENT,
        reason: error instanceof Error ? error.message : String(error),
      }),
  })

/** Reads a Cluster manifest (YAML or JSON) and returns it as the JSON bytes the operator would send. */
export const clusterDefinitionFromFile = (file: string): Effect.Effect<Buffer, CallFailed> =>
  readManifest(file, "Cluster").pipe(Effect.map((cluster) => Buffer.from(JSON.stringify(cluster))))

/**
 * `client wal-archive`: what CloudNativePG's `manager wal-archive` does as an archive_command, through
 * the port of its plugin client (`src/cnpg/`): the sockets of `pluginDir` that the Cluster enables are
 * loaded and every one that can archive is called. The WAL path is made absolute against the working
 * directory (PostgreSQL runs archive_command in PGDATA, where `%p` is relative).
 */
export const archiveWal = (
  pluginDir: string,
  clusterFile: string,
  walPath: string,
): Effect.Effect<void, CallFailed> =>
  Effect.flatMap(readManifest(clusterFile, "Cluster"), (cluster) =>
    Effect.asVoid(InstanceManager.archiveWal({ pluginDir, cluster, walPath: path.resolve(walPath) })),
  )

const record = (value: unknown): Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? { ...value } : {}

/**
 * The Backup resource the operator would send: from a manifest (as `kubectl apply` takes it) or made up
 * from a name, with a fresh uid standing in for the one the API server assigns.
 */
export const backupResource = (
  cluster: Record<string, unknown>,
  options: {
    readonly manifest?: Record<string, unknown>
    readonly name?: string
    readonly parameters: Readonly<Record<string, string>>
  },
): Record<string, unknown> => {
  const clusterMeta = record(cluster.metadata)
  const clusterName = typeof clusterMeta.name === "string" ? clusterMeta.name : "cluster"
  const namespace = typeof clusterMeta.namespace === "string" ? clusterMeta.namespace : "default"
  const manifest = options.manifest ?? {}
  const metadata = record(manifest.metadata)
  const spec = record(manifest.spec)
  const pluginConfiguration = record(spec.pluginConfiguration)
  const stamp = new Date().toISOString().replace(/[-:T]/g, "").slice(0, 14)
  return {
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Backup",
    ...manifest,
    metadata: {
      namespace,
      ...metadata,
      name: typeof metadata.name === "string" ? metadata.name : (options.name ?? `${clusterName}-${stamp}`),
      uid: typeof metadata.uid === "string" ? metadata.uid : crypto.randomUUID(),
    },
    spec: {
      cluster: { name: clusterName },
      method: "plugin",
      ...spec,
      pluginConfiguration: {
        name: PLUGIN_NAME,
        ...pluginConfiguration,
        parameters: { ...record(pluginConfiguration.parameters), ...options.parameters },
      },
    },
  }
}

/** How `kubectl get backup -o yaml` would show the result in the Backup's status. */
export const backupStatusOf = (result: BackupResult) => ({
  phase: "completed",
  method: "plugin",
  backupId: result.backupId,
  backupName: result.backupName,
  startedAt: new Date(result.startedAt * 1000).toISOString(),
  stoppedAt: new Date(result.stoppedAt * 1000).toISOString(),
  beginWal: result.beginWal,
  endWal: result.endWal,
  beginLSN: result.beginLsn,
  endLSN: result.endLsn,
  online: result.online,
  instanceID: { podName: result.instanceId },
  pluginMetadata: result.metadata,
})

/** `client backup`: what `/controller/manager backup` does in the pod for a plugin Backup. */
export const takeBackup = (
  pluginDir: string,
  command: {
    readonly clusterFile: string
    readonly backupFile?: string
    readonly backupName?: string
    readonly parameters: Readonly<Record<string, string>>
  },
): Effect.Effect<BackupResult, CallFailed> =>
  Effect.gen(function* () {
    const cluster = yield* readManifest(command.clusterFile, "Cluster")
    const manifest =
      command.backupFile === undefined ? undefined : yield* readManifest(command.backupFile, "Backup")
    const backup = backupResource(cluster, {
      ...(manifest === undefined ? {} : { manifest }),
      ...(command.backupName === undefined ? {} : { name: command.backupName }),
      parameters: command.parameters,
    })
    const pluginConfiguration = record(record(backup.spec).pluginConfiguration)
    const parameters = record(pluginConfiguration.parameters)
    return yield* InstanceManager.takeBackup({
      pluginDir,
      pluginName: typeof pluginConfiguration.name === "string" ? pluginConfiguration.name : PLUGIN_NAME,
      cluster,
      backup,
      parameters: Object.fromEntries(Object.entries(parameters).map(([key, value]) => [key, String(value)])),
    })
  })
