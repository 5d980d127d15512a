import * as fs from "node:fs"
import * as path from "node:path"
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type { FileSystem } from "@effect/platform/FileSystem"
import { loadYaml } from "@kubernetes/client-node"
import { Effect, type Scope } from "effect"
import { makeDir, makeTempDir, postgresAccount, type RigError, rigError } from "./exec.js"
import { PROJECT_ROOT } from "./paths.js"
import type { Postgres } from "./postgres.js"
import type { S3Endpoint } from "./s3.js"
import { MAIN_JS, makeSidecar, NODE, type Sidecar } from "./sidecar.js"

const EXAMPLES = path.join(PROJECT_ROOT, "examples")

/** The repository path of the S3 repository in the bucket, and where the posix one lives. */
export interface PluginDirs {
  readonly baseDir: string
  readonly pluginDir: string
  readonly manifestsDir: string
  readonly clusterFile: string
  readonly stateDir: string
  readonly runDir: string
  readonly spoolDir: string
  readonly posixRepo: string
  readonly s3RepoPath: string
  /** The archive_command CloudNativePG would set, with our CLI client in place of the instance manager. */
  readonly archiveCommand: string
  readonly logFile: string
  /** examples/cluster-restored.yaml: bootstraps from the Stanza above through its external cluster. */
  readonly restoredClusterFile: string
}

export interface PluginOptions {
  readonly s3: S3Endpoint
  /** Merged into `spec.stanzaConfiguration` of the documented example (e.g. `{ archive: { async: true } }`). */
  readonly stanza?: Readonly<Record<string, unknown>>
  /** Adds a posix repository (number 2) next to the S3 one. Default true. */
  readonly posix?: boolean
}

const example = (file: string): Record<string, unknown> => {
  const object = loadYaml<unknown>(fs.readFileSync(path.join(EXAMPLES, file), "utf8"))
  if (typeof object !== "object" || object === null || Array.isArray(object)) {
    throw new Error(`examples/${file} is not an object`)
  }
  return { ...object }
}

/**
 * Writes the documented Secret, Stanza and Cluster (examples/) into a manifests directory, pointed at
 * the local HTTPS S3 endpoint (its CA in the Secret, TLS verification on) and, optionally, a posix
 * repository; creates the directories a sidecar needs, owned by postgres.
 */
export const preparePlugin = (
  options: PluginOptions,
): Effect.Effect<PluginDirs, RigError, Scope.Scope | FileSystem | CommandExecutor> =>
  Effect.gen(function* () {
    const owner = yield* postgresAccount
    const baseDir = yield* makeTempDir("cnpg-pgbackrest-plugin-", { owner, mode: 0o755 })
    const dir = (name: string) => makeDir(path.join(baseDir, name), { owner, mode: 0o700 })
    const pluginDir = yield* dir("plugins")
    const manifestsDir = yield* makeDir(path.join(baseDir, "manifests"), { owner, mode: 0o755 })
    const stateDir = yield* dir("state")
    const runDir = yield* dir("run")
    const spoolDir = yield* dir("spool")
    const posixRepo = yield* dir("posix-repo")
    const s3RepoPath = `/cluster-demo-${path.basename(baseDir)}`

    const secret = example("secret.yaml")
    const ca = fs.readFileSync(options.s3.caFile, "utf8")
    secret.stringData = {
      ACCESS_KEY_ID: options.s3.accessKeyId,
      ACCESS_SECRET_KEY: options.s3.secretAccessKey,
      "ca.crt": ca,
    }

    const stanza = example("stanza.yaml")
    const spec = stanza.spec as { stanzaConfiguration: Record<string, unknown> }
    const documented = (spec.stanzaConfiguration.s3Repositories as Array<Record<string, unknown>>)[0] ?? {}
    spec.stanzaConfiguration = {
      ...spec.stanzaConfiguration,
      s3Repositories: [
        {
          ...documented,
          bucket: options.s3.bucket,
          endpoint: `${options.s3.host}:${options.s3.port}`,
          region: options.s3.region,
          repoPath: s3RepoPath,
          verifyTLS: true,
          endpointCA: { name: "pgbackrest-s3-secret", key: "ca.crt" },
        },
      ],
      ...(options.posix === false ? {} : { posixRepositories: [{ repoPath: posixRepo }] }),
      ...options.stanza,
    }
    const cluster = example("cluster.yaml")
    const clusterFile = path.join(manifestsDir, "cluster.yaml")
    const restoredClusterFile = path.join(manifestsDir, "cluster-restored.yaml")
    yield* Effect.try({
      try: () => {
        fs.writeFileSync(path.join(manifestsDir, "secret.yaml"), JSON.stringify(secret, null, 2), {
          mode: 0o644,
        })
        fs.writeFileSync(path.join(manifestsDir, "stanza.yaml"), JSON.stringify(stanza, null, 2), {
          mode: 0o644,
        })
        fs.writeFileSync(clusterFile, JSON.stringify(cluster, null, 2), { mode: 0o644 })
        fs.writeFileSync(restoredClusterFile, JSON.stringify(example("cluster-restored.yaml"), null, 2), {
          mode: 0o644,
        })
      },
      catch: (error) => rigError("manifests", String(error)),
    })
    const logFile = path.join(baseDir, "sidecar.log")
    fs.writeFileSync(logFile, "")
    fs.chownSync(logFile, owner.uid, owner.gid)
    return {
      baseDir,
      pluginDir,
      manifestsDir,
      clusterFile,
      stateDir,
      runDir,
      spoolDir,
      posixRepo,
      s3RepoPath,
      archiveCommand: `${NODE} ${MAIN_JS} client wal-archive --plugin-path ${pluginDir} --cluster ${clusterFile} --log-level warning %p`,
      logFile,
      restoredClusterFile,
    }
  })

/** Rewrites the Stanza manifest with `stanzaConfiguration` changes; local mode reads manifests at start, so restart the sidecar. */
export const updateStanza = (
  dirs: PluginDirs,
  change: (config: Record<string, unknown>) => Record<string, unknown>,
) =>
  Effect.try({
    try: () => {
      const file = path.join(dirs.manifestsDir, "stanza.yaml")
      const stanza = JSON.parse(fs.readFileSync(file, "utf8"))
      stanza.spec.stanzaConfiguration = change(stanza.spec.stanzaConfiguration)
      fs.writeFileSync(file, JSON.stringify(stanza, null, 2))
    },
    catch: (error) => rigError("update stanza", String(error)),
  })

/** The `instance` sidecar for `pg`, as CloudNativePG would configure it (not started). */
export const sidecarFor = (
  dirs: PluginDirs,
  pg: Postgres,
): Effect.Effect<Sidecar, RigError, Scope.Scope | FileSystem> =>
  makeSidecar({
    pluginDir: dirs.pluginDir,
    manifestsDir: dirs.manifestsDir,
    logFile: dirs.logFile,
    env: {
      HOME: dirs.stateDir,
      PGDATA: pg.pgdata,
      PGHOST: pg.socketDir,
      PGPORT: String(pg.port),
      NAMESPACE: "default",
      CLUSTER_NAME: "cluster-demo",
      POD_NAME: "cluster-demo-1",
      CNPG_PGBACKREST_STATE_DIR: dirs.stateDir,
      CNPG_PGBACKREST_RUN_DIR: dirs.runDir,
      CNPG_PGBACKREST_SPOOL_PATH: dirs.spoolDir,
    },
  })

/** Options of {@link restoreSidecarFor}. */
export interface RestoreSidecarOptions {
  /** The Cluster manifest the restore_command sends (default `dirs.restoredClusterFile`). */
  readonly clusterFile?: string
  /**
   * Prefix of the sidecar's directories and log under `dirs.baseDir` (default `restore`): give each restore
   * sidecar of a test its own, or the second one finds the first one's socket in use.
   */
  readonly name?: string
  /** More environment for the sidecar (e.g. CNPG_PGBACKREST_WAL_RESTORE_RETRY). */
  readonly env?: Readonly<Record<string, string>>
  /** The restore_command for the sidecar's socket directory (default: our CLI client, the port). */
  readonly restoreCommand?: (pluginDir: string) => string
}

/** The full-recovery Job's sidecar (`restore` role) for a new, empty data directory, and its restore_command. */
export const restoreSidecarFor = (
  dirs: PluginDirs,
  pgdata: string,
  options: RestoreSidecarOptions = {},
): Effect.Effect<
  { readonly sidecar: Sidecar; readonly restoreCommand: string },
  RigError,
  Scope.Scope | FileSystem | CommandExecutor
> =>
  Effect.gen(function* () {
    const owner = yield* postgresAccount
    const name = options.name ?? "restore"
    const dir = (sub: string) => makeDir(path.join(dirs.baseDir, `${name}-${sub}`), { owner, mode: 0o700 })
    const pluginDir = yield* dir("plugins")
    const logFile = path.join(dirs.baseDir, `${name}-sidecar.log`)
    fs.writeFileSync(logFile, "")
    fs.chownSync(logFile, owner.uid, owner.gid)
    const stateDir = yield* dir("state")
    const sidecar = yield* makeSidecar({
      role: "restore",
      pluginDir,
      manifestsDir: dirs.manifestsDir,
      logFile,
      env: {
        HOME: stateDir,
        PGDATA: pgdata,
        NAMESPACE: "default",
        CLUSTER_NAME: "cluster-restored",
        POD_NAME: "cluster-restored-1-full-recovery",
        CNPG_PGBACKREST_STATE_DIR: yield* makeDir(path.join(stateDir, "plugin"), { owner, mode: 0o700 }),
        CNPG_PGBACKREST_RUN_DIR: yield* dir("run"),
        CNPG_PGBACKREST_SPOOL_PATH: yield* dir("spool"),
        ...options.env,
      },
    })
    return {
      sidecar,
      restoreCommand:
        options.restoreCommand?.(pluginDir) ??
        `${NODE} ${MAIN_JS} client wal-restore --plugin-path ${pluginDir} --cluster ${options.clusterFile ?? dirs.restoredClusterFile} --log-level warning %f %p`,
    }
  })
