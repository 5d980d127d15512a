import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Either, Schema, type Scope } from "effect"
import { createClient, Status } from "nice-grpc"
import { decodeWithPath } from "../domain/decode.js"
import { CallFailed } from "../domain/errors.js"
import { BackupDefinition, type BackupResult } from "../generated/backup.js"
import { type CollectMetric, type Metric, MetricsDefinition } from "../generated/metrics.js"
import { RestoreJobHooksDefinition, type RestoreResponse } from "../generated/restore_job.js"
import { WALDefinition, WALRestoreRequest_Mode } from "../generated/wal.js"
import { callPlugin, can, type LoadedPlugin, loadPlugin, openChannel, probe } from "./connection.js"

/**
 * A port of what CloudNativePG's instance manager does when PostgreSQL or the operator asks it to
 * reach the plugins of its pod (read at a95a534, v1.30.0-86): every invocation is a new process that
 * scans the socket directory, loads each plugin the Cluster enables on a new connection, and calls
 * only the plugins whose capabilities allow the call.
 */

/** The parts of the Cluster the instance manager reads to choose plugins, decoded leniently. */
const PluginUse = Schema.Struct({
  name: Schema.String,
  enabled: Schema.optional(Schema.Boolean),
  isWALArchiver: Schema.optional(Schema.Boolean),
})
const ClusterPlugins = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  spec: Schema.optionalWith(
    Schema.Struct({
      plugins: Schema.optional(Schema.Array(PluginUse)),
      externalClusters: Schema.optional(
        Schema.Array(Schema.Struct({ name: Schema.String, plugin: Schema.optional(PluginUse) })),
      ),
    }),
    { default: () => ({}) },
  ),
})
type ClusterPlugins = typeof ClusterPlugins.Type

const decodeClusterPlugins = decodeWithPath(ClusterPlugins, "cluster", { strict: false })

/** `enabled` defaults to true (`+kubebuilder:default:=true`, `IsEnabled` reads nil as true). */
const enabled = (entry: { readonly enabled?: boolean | undefined }): boolean => entry.enabled !== false

/** `GetPluginConfigurationEnabledPluginNames(spec.plugins)`. */
export const enabledPluginNames = (cluster: ClusterPlugins): ReadonlyArray<string> =>
  (cluster.spec.plugins ?? []).filter(enabled).map((entry) => entry.name)

/** `GetExternalClustersEnabledPluginNames(spec.externalClusters)`. */
export const externalClusterPluginNames = (cluster: ClusterPlugins): ReadonlyArray<string> =>
  (cluster.spec.externalClusters ?? []).flatMap((external) =>
    external.plugin !== undefined && enabled(external.plugin) ? [external.plugin.name] : [],
  )

/** `GetEnabledWALArchivePluginName()`: the first enabled plugin with `isWALArchiver: true`. */
export const walArchiverName = (cluster: ClusterPlugins): string | undefined =>
  (cluster.spec.plugins ?? []).find((entry) => enabled(entry) && entry.isWALArchiver === true)?.name

const failed = (address: string, rpc: string, code: Status, reason: string) =>
  new CallFailed({ address, rpc, code, reason })

/**
 * `RegisterUnixSocketPluginsInPath` then `WithPlugins`: each entry of `dir` is a plugin named after
 * its file; those the Cluster asks for are loaded, de-duplicated and sorted by name, each on a new
 * connection closed with the scope. A missing directory holds no plugin. A plugin that fails to load
 * fails the whole invocation, as `NewClient` does.
 */
export const loadUnixPlugins = (
  dir: string,
  names: ReadonlyArray<string>,
): Effect.Effect<ReadonlyArray<LoadedPlugin>, CallFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const available = yield* Effect.sync(() => {
      try {
        return new Set(fs.readdirSync(dir))
      } catch {
        return new Set<string>()
      }
    })
    const wanted = [...new Set(names)].filter((name) => available.has(name)).sort()
    return yield* Effect.forEach(wanted, (name) =>
      Effect.flatMap(openChannel(`unix://${path.join(dir, name)}`), (channel) =>
        loadPlugin(channel, `unix:${path.join(dir, name)}`),
      ),
    )
  })

const decodeCluster = (cluster: unknown, address: string, rpc: string) =>
  Either.mapLeft(decodeClusterPlugins(cluster), (error) =>
    failed(address, rpc, Status.INVALID_ARGUMENT, error.message),
  )

/** `EnsureGVKIsPresent`: CloudNativePG sends its Cluster with apiVersion and kind for these calls. */
const withTypeMeta = (object: unknown, apiVersion: string, kind: string): unknown =>
  typeof object === "object" && object !== null && !Array.isArray(object)
    ? { apiVersion, kind, ...object }
    : object

const bytes = (value: unknown) => Buffer.from(JSON.stringify(value))

/** What one invocation did: the plugins it called, by name, in order. */
export interface Invocation {
  readonly called: ReadonlyArray<string>
}

/**
 * `manager wal-archive` (`archiver.go`, `archiveWALViaPlugins`, `client/wal.go` ArchiveWAL): every
 * enabled plugin that can archive is called in name order, and the first error fails the command. A
 * Cluster whose designated WAL archiver is not loaded fails ("wal archive plugin is not available");
 * with none designated and nothing to call, CloudNativePG would fall back to barman in-tree, which
 * without `barmanObjectStore` succeeds: so does this.
 */
export const archiveWal = (options: {
  readonly pluginDir: string
  readonly cluster: unknown
  readonly walPath: string
  /** Set by CloudNativePG after 1.30 only; released versions leave it out. */
  readonly checkEmptyWalArchive?: boolean
}): Effect.Effect<Invocation, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const rpc = "cnpgi.wal.v1.WAL/Archive"
      const cluster = yield* decodeCluster(options.cluster, options.pluginDir, rpc)
      const plugins = yield* loadUnixPlugins(options.pluginDir, enabledPluginNames(cluster))
      const archiver = walArchiverName(cluster)
      if (archiver !== undefined && !plugins.some((plugin) => plugin.name === archiver)) {
        return yield* failed(
          options.pluginDir,
          rpc,
          Status.UNAVAILABLE,
          "wal archive plugin is not available",
        )
      }
      const called: Array<string> = []
      for (const plugin of plugins.filter(can.archiveWal)) {
        yield* probe(plugin)
        called.push(plugin.name)
        yield* callPlugin(plugin, rpc, (signal) =>
          createClient(WALDefinition, plugin.channel).archive(
            {
              clusterDefinition: bytes(options.cluster),
              sourceFileName: options.walPath,
              parameters: {},
              ...(options.checkEmptyWalArchive === undefined
                ? {}
                : { checkEmptyWalArchive: options.checkEmptyWalArchive }),
            },
            { signal },
          ),
        )
      }
      return { called }
    }),
  )

/**
 * `manager wal-restore` (`walrestore/cmd.go`, `client/wal.go` RestoreWAL): the plugins of
 * `spec.plugins` and of the external clusters that can restore WAL are tried in name order; the first
 * success wins, and any error, NOT_FOUND or another, only means "try the next one". When none
 * succeeds the command fails (PostgreSQL sees exit 1): the error carries the last plugin's code.
 */
export const restoreWal = (options: {
  readonly pluginDir: string
  readonly cluster: unknown
  readonly walName: string
  readonly destination: string
  /** Released CloudNativePG sends MODE_UNSPECIFIED; after 1.30, RECOVERY or REWIND (`--rewind`). */
  readonly mode?: WALRestoreRequest_Mode
}): Effect.Effect<Invocation, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const rpc = "cnpgi.wal.v1.WAL/Restore"
      const cluster = yield* decodeCluster(options.cluster, options.pluginDir, rpc)
      const names = [...enabledPluginNames(cluster), ...externalClusterPluginNames(cluster)]
      const plugins = (yield* loadUnixPlugins(options.pluginDir, names)).filter(can.restoreWal)
      const errors: Array<CallFailed> = []
      const called: Array<string> = []
      for (const plugin of plugins) {
        called.push(plugin.name)
        const outcome = yield* Effect.either(
          Effect.zipRight(
            probe(plugin),
            callPlugin(plugin, rpc, (signal) =>
              createClient(WALDefinition, plugin.channel).restore(
                {
                  clusterDefinition: bytes(options.cluster),
                  sourceWalName: options.walName,
                  destinationFileName: options.destination,
                  parameters: {},
                  mode: options.mode ?? WALRestoreRequest_Mode.MODE_UNSPECIFIED,
                },
                { signal },
              ),
            ),
          ),
        )
        if (Either.isRight(outcome)) {
          return { called }
        }
        errors.push(outcome.left)
      }
      const last = errors.at(-1)
      return yield* failed(
        last?.address ?? options.pluginDir,
        rpc,
        last?.code ?? Status.NOT_FOUND,
        errors.length === 0
          ? `no plugin that restores WAL is available for ${options.walName}`
          : errors.map((error) => error.message).join("; "),
      )
    }),
  )

/**
 * `manager backup` for a plugin Backup (`client/backup.go`): the named plugin must be loaded, serve
 * the Backup service and list its BACKUP RPC; the Backup and the Cluster are sent with their types.
 */
export const takeBackup = (options: {
  readonly pluginDir: string
  readonly pluginName: string
  readonly cluster: unknown
  readonly backup: unknown
  readonly parameters: Readonly<Record<string, string>>
}): Effect.Effect<BackupResult, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const rpc = "cnpgi.backup.v1.Backup/Backup"
      const cluster = yield* decodeCluster(options.cluster, options.pluginDir, rpc)
      const plugins = yield* loadUnixPlugins(options.pluginDir, enabledPluginNames(cluster))
      const plugin = plugins.find((candidate) => candidate.name === options.pluginName)
      if (plugin === undefined) {
        return yield* failed(
          options.pluginDir,
          rpc,
          Status.UNAVAILABLE,
          `plugin ${options.pluginName} is not loaded`,
        )
      }
      if (!can.backup(plugin)) {
        return yield* failed(
          plugin.address,
          rpc,
          Status.UNIMPLEMENTED,
          `plugin ${plugin.name} does not support backups`,
        )
      }
      yield* probe(plugin)
      return yield* callPlugin(plugin, rpc, (signal) =>
        createClient(BackupDefinition, plugin.channel).backup(
          {
            clusterDefinition: bytes(withTypeMeta(options.cluster, "postgresql.cnpg.io/v1", "Cluster")),
            backupDefinition: bytes(withTypeMeta(options.backup, "postgresql.cnpg.io/v1", "Backup")),
            parameters: options.parameters,
          },
          { signal },
        ),
      )
    }),
  )

/**
 * The full-recovery Job's restore (`client/restore_job.go`): the first loaded plugin, in name order,
 * that lists KIND_RESTORE fills PGDATA; none is an error. Released CloudNativePG sends
 * `check_empty_wal_archive` only from 1.31 on: left out here.
 */
export const restoreJob = (options: {
  readonly pluginDir: string
  readonly cluster: unknown
}): Effect.Effect<RestoreResponse, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const rpc = "cnpgi.wal.v1.RestoreJobHooks/Restore"
      const cluster = yield* decodeCluster(options.cluster, options.pluginDir, rpc)
      const names = [...enabledPluginNames(cluster), ...externalClusterPluginNames(cluster)]
      const plugin = (yield* loadUnixPlugins(options.pluginDir, names)).find(can.restoreJob)
      if (plugin === undefined) {
        return yield* failed(
          options.pluginDir,
          rpc,
          Status.UNIMPLEMENTED,
          "no plugin supports the restore job hooks capability",
        )
      }
      yield* probe(plugin)
      return yield* callPlugin(plugin, rpc, (signal) =>
        createClient(RestoreJobHooksDefinition, plugin.channel).restore(
          { clusterDefinition: bytes(withTypeMeta(options.cluster, "postgresql.cnpg.io/v1", "Cluster")) },
          { signal },
        ),
      )
    }),
  )

/** What one plugin's metrics were: their definitions and the values collected with them. */
export interface PluginMetrics {
  readonly plugin: string
  readonly definitions: ReadonlyArray<Metric>
  readonly values: ReadonlyArray<CollectMetric>
}

/**
 * The instance manager's metrics collector (`client/metrics.go`, `collector.go`): every loaded plugin
 * that lists METRICS is asked for its definitions, then its values; a value without a definition
 * fails the whole collection, as an error does. The real collector loads the enabled plugins that the
 * operator recorded as injecting a sidecar (`status.pluginStatus`); without an operator here, every
 * enabled plugin is loaded.
 */
export const collectMetrics = (options: {
  readonly pluginDir: string
  readonly cluster: unknown
}): Effect.Effect<ReadonlyArray<PluginMetrics>, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const rpc = "cnpgi.metrics.v1.Metrics/Collect"
      const cluster = yield* decodeCluster(options.cluster, options.pluginDir, rpc)
      const plugins = (yield* loadUnixPlugins(options.pluginDir, enabledPluginNames(cluster))).filter(
        can.metrics,
      )
      return yield* Effect.forEach(plugins, (plugin) =>
        Effect.gen(function* () {
          yield* probe(plugin)
          const client = createClient(MetricsDefinition, plugin.channel)
          const request = { clusterDefinition: bytes(options.cluster) }
          const definitions = yield* callPlugin(plugin, "cnpgi.metrics.v1.Metrics/Define", (signal) =>
            client.define(request, { signal }),
          )
          yield* probe(plugin)
          const collected = yield* callPlugin(plugin, rpc, (signal) => client.collect(request, { signal }))
          const known = new Set(definitions.metrics.map((metric) => metric.fqName))
          const undefinedMetric = collected.metrics.find((metric) => !known.has(metric.fqName))
          if (undefinedMetric !== undefined) {
            return yield* failed(
              plugin.address,
              rpc,
              Status.INTERNAL,
              `metric ${undefinedMetric.fqName} has no definition`,
            )
          }
          return { plugin: plugin.name, definitions: definitions.metrics, values: collected.metrics }
        }),
      )
    }),
  )
