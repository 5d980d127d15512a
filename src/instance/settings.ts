import * as path from "node:path"
import { Config, Context, type Duration, Effect, Layer, type Option } from "effect"

/**
 * What the `instance` and `restore` sidecars know about their pod. CloudNativePG gives the sidecar a
 * copy of the `postgres` container's environment, so these are the variables it sets there.
 */
export interface InstanceSettingsShape {
  readonly clusterName: Option.Option<string>
  readonly namespace: string
  readonly podName: Option.Option<string>
  readonly pgData: string
  readonly pgHost: string
  readonly pgPort: number
  /** The durable record of initialised stanzas (on the instance's persistent volume). */
  readonly stateFile: string
  /** pgBackRest's spool for async archiving: on persistent storage, never an emptyDir that loses WAL. */
  readonly spoolPath: string
  /** Scratch space (locks, CA bundles written from Secrets): lost on restart, and that is fine. */
  readonly runDir: string
  /** Where CloudNativePG mounts the WAL volume of a Cluster with `walStorage` (pg_wal lives below it). */
  readonly walVolume: string
  /** How long one WAL.Restore retries a repository that cannot be read; unset: the role's default. */
  readonly walRestoreRetry: Option.Option<Duration.Duration>
}

/** Which socket role this process plays: the pod's sidecar, or the full-recovery Job's. */
export class PluginRole extends Context.Tag("cnpg-pgbackrest/PluginRole")<
  PluginRole,
  "instance" | "restore"
>() {}

export class InstanceSettings extends Context.Tag("cnpg-pgbackrest/InstanceSettings")<
  InstanceSettings,
  InstanceSettingsShape
>() {}

const settingsConfig = Effect.gen(function* () {
  const pgData = yield* Config.string("PGDATA").pipe(
    Config.withDefault("/var/lib/postgresql/data/pgdata"),
    Config.withDescription("the PostgreSQL data directory"),
  )
  const stateDir = yield* Config.string("CNPG_PGBACKREST_STATE_DIR").pipe(
    Config.withDefault(path.join(path.dirname(pgData), "pgbackrest-plugin")),
    Config.withDescription("persistent directory for the plugin's own state (next to PGDATA by default)"),
  )
  return {
    clusterName: yield* Config.option(Config.string("CLUSTER_NAME")),
    namespace: yield* Config.string("NAMESPACE").pipe(
      Config.withDefault("default"),
      Config.withDescription("namespace of the Cluster, its Stanzas and Secrets"),
    ),
    podName: yield* Config.option(Config.string("POD_NAME")),
    pgData,
    pgHost: yield* Config.string("PGHOST").pipe(
      Config.withDefault("/controller/run"),
      Config.withDescription("unix socket directory of PostgreSQL"),
    ),
    pgPort: yield* Config.integer("PGPORT").pipe(Config.withDefault(5432)),
    stateFile: path.join(stateDir, "stanzas.json"),
    spoolPath: yield* Config.string("CNPG_PGBACKREST_SPOOL_PATH").pipe(
      Config.withDefault(path.join(stateDir, "spool")),
      Config.withDescription("pgBackRest spool path for async archiving (must be persistent)"),
    ),
    walVolume: yield* Config.string("CNPG_PGBACKREST_WAL_VOLUME").pipe(
      Config.withDefault("/var/lib/postgresql/wal"),
      Config.withDescription("mount point of the WAL volume when the Cluster has walStorage"),
    ),
    walRestoreRetry: yield* Config.option(
      Config.duration("CNPG_PGBACKREST_WAL_RESTORE_RETRY").pipe(
        Config.withDescription(
          "how long one WAL.Restore retries an unreadable repository (default: 10 minutes in a recovery Job, 30 seconds in an instance)",
        ),
      ),
    ),
    runDir: yield* Config.string("CNPG_PGBACKREST_RUN_DIR").pipe(
      Config.withDefault("/controller/tmp/pgbackrest-plugin"),
      Config.withDescription("scratch directory for locks and CA bundles"),
    ),
  } satisfies InstanceSettingsShape
})

/** Settings from the environment (the pod's, or the test's ConfigProvider). */
export const InstanceSettingsLive = Layer.effect(InstanceSettings, settingsConfig)
