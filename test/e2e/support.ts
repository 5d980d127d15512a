import * as fs from "node:fs"
import * as path from "node:path"
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import { assert } from "@effect/vitest"
import { Effect, Schema, type Scope } from "effect"
import { Status } from "nice-grpc"
import { restoreJob } from "../../src/cli/restoreClient.js"
import * as InstanceManager from "../../src/cnpg/instanceManager.js"
import type { CallFailed } from "../../src/domain/errors.js"
import type { WALArchiveRequest } from "../../src/generated/wal.js"
import { type RigError, rigError, withLiveClock } from "../rig/exec.js"
import { makeLocalEnv as makePgBackRestEnv, runPgBackRest } from "../rig/pgbackrest.js"
import { type PluginDirs, preparePlugin, restoreSidecarFor, sidecarFor, updateStanza } from "../rig/plugin.js"
import type { Postgres } from "../rig/postgres.js"
import * as PostgresCluster from "../rig/postgres.js"
import * as S3Endpoint from "../rig/s3.js"
import type { Sidecar } from "../rig/sidecar.js"

export interface ArchiverStats {
  readonly archived: number
  readonly failed: number
  readonly lastArchived: string
}

export const archiverStats = (pg: Postgres): Effect.Effect<ArchiverStats, RigError> =>
  pg
    .psql(
      "SELECT archived_count || '|' || failed_count || '|' || coalesce(last_archived_wal, '') FROM pg_stat_archiver",
    )
    .pipe(
      Effect.map((line) => {
        const [archived = "0", failed = "0", lastArchived = ""] = line.split("|")
        return { archived: Number(archived), failed: Number(failed), lastArchived }
      }),
    )

/** Polls until `condition` holds, on the real clock; fails naming `what` after `timeoutMs`. */
export const eventually = <A, E>(
  what: string,
  probe: Effect.Effect<A, E>,
  condition: (value: A) => boolean,
  timeoutMs = 60_000,
): Effect.Effect<A, E | RigError> =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    let last: A = yield* probe
    while (!condition(last)) {
      if (Date.now() > deadline) {
        return yield* Effect.fail(rigError("eventually", `${what} (last seen: ${JSON.stringify(last)})`))
      }
      yield* Effect.sleep("100 millis")
      last = yield* probe
    }
    return last
  }).pipe(withLiveClock)

/** Waits until PostgreSQL reports `segment` (or a later one) as archived. */
export const archivedThrough = (pg: Postgres, segment: string, timeoutMs = 60_000) =>
  eventually(
    `PostgreSQL to archive ${segment}`,
    archiverStats(pg),
    (stats) => stats.lastArchived >= segment,
    timeoutMs,
  )

/**
 * Wakes PostgreSQL's archiver: `pg_reload_conf()` signals it (SIGHUP sets its latch), which ends the up to
 * 60 s sleep that follows three failed attempts. Checked on PostgreSQL 15: the pending segment was
 * archived about 0.6 s after the signal; WAL written without completing a segment does not wake it
 * (archived 52 s later); a segment switch does (it adds a .ready file).
 */
export const nudgeArchiver = (pg: Postgres): Effect.Effect<void, RigError> =>
  Effect.asVoid(pg.psql("SELECT pg_reload_conf()"))

/**
 * Like {@link archivedThrough}, but wakes the archiver (see {@link nudgeArchiver}) every `nudgeMs`, for
 * waits that follow failures. Only PostgreSQL's idle time is shortened; every attempt still goes through
 * archive_command and the plugin.
 */
export const archivedThroughNudged = (pg: Postgres, segment: string, timeoutMs = 60_000, nudgeMs = 2_000) => {
  let lastNudge = Date.now()
  const probe = Effect.gen(function* () {
    if (Date.now() - lastNudge >= nudgeMs) {
      lastNudge = Date.now()
      yield* nudgeArchiver(pg)
    }
    return yield* archiverStats(pg)
  })
  return eventually(
    `PostgreSQL to archive ${segment}`,
    probe,
    (stats) => stats.lastArchived >= segment,
    timeoutMs,
  )
}

/** The names of the segments from `first` to `last` inclusive: one timeline, 16 MiB segments (256 per log). */
export const segmentRange = (first: string, last: string): ReadonlyArray<string> => {
  const timeline = first.slice(0, 8)
  if (last.slice(0, 8) !== timeline) {
    throw new Error(`${first} and ${last} are on different timelines`)
  }
  const position = (name: string) =>
    BigInt(`0x${name.slice(8, 16)}`) * 256n + BigInt(`0x${name.slice(16, 24)}`)
  const hex = (value: bigint) => value.toString(16).toUpperCase().padStart(8, "0")
  const names: Array<string> = []
  for (let at = position(first); at <= position(last); at++) {
    names.push(`${timeline}${hex(at / 256n)}${hex(at % 256n)}`)
  }
  return names
}

/** How many times the sidecar ran `stanza-create` successfully, across all its runs (the log is appended). */
export const stanzaInitialisedCount = (log: string): number =>
  log.split("\n").filter((line) => line.includes('"msg":"stanza initialised"')).length

/** The segments PostgreSQL still has to archive: `pg_wal/archive_status/*.ready`. */
export const readySegments = (pg: Postgres): Effect.Effect<ReadonlyArray<string>, RigError> =>
  Effect.try({
    try: () =>
      fs
        .readdirSync(path.join(pg.pgdata, "pg_wal", "archive_status"))
        .filter((name) => name.endsWith(".ready"))
        .map((name) => name.slice(0, -".ready".length))
        .sort(),
    catch: (error) => rigError("archive_status", String(error)),
  })

/** A repository as the Stanza numbers it (S3 ones first, then posix ones). */
export type RepoSpec =
  | { readonly kind: "s3"; readonly path: string }
  | { readonly kind: "posix"; readonly path: string }

/**
 * pgBackRest's own view of the repositories, independent of the plugin: the stanza `main` of the
 * documented Stanza, `repos` numbered from 1 in order.
 */
export const verificationEnv = (
  pg: Postgres,
  s3: S3Endpoint.S3Endpoint,
  repos: ReadonlyArray<RepoSpec>,
): Effect.Effect<Record<string, string>, RigError, Scope.Scope | FileSystem.FileSystem | CommandExecutor> =>
  Effect.map(makePgBackRestEnv(pg), (local) => {
    const env: Record<string, string> = { ...local, PGBACKREST_STANZA: "main" }
    repos.forEach((repo, index) => {
      Object.assign(
        env,
        repo.kind === "s3"
          ? S3Endpoint.pgbackrestRepoEnv(s3, index + 1, repo.path)
          : {
              [`PGBACKREST_REPO${index + 1}_TYPE`]: "posix",
              [`PGBACKREST_REPO${index + 1}_PATH`]: repo.path,
            },
      )
    })
    return env
  })

const ARCHIVED_SEGMENT = /(?:^|\/)([0-9A-F]{24})-[0-9a-f]{40}(?:\.[a-z0-9]+)?$/

/**
 * The WAL segments repository `repo` holds for stanza `main` under archive id `archiveId` (PostgreSQL 15,
 * first database of the repository), listed by `pgbackrest repo-ls`. The archive id is named because
 * s3rver answers a recursive listing of `archive/main` with its two files only (no sub-paths).
 */
export const segmentsInRepo = (
  env: Readonly<Record<string, string>>,
  repo: number,
  archiveId = "15-1",
): Effect.Effect<ReadonlySet<string>, RigError, CommandExecutor> =>
  Effect.gen(function* () {
    const listed = yield* runPgBackRest(
      [`--repo=${repo}`, "repo-ls", "--recurse", `archive/main/${archiveId}`],
      env,
    )
    if (listed.exitCode !== 0) {
      return yield* Effect.fail(
        rigError(`repo-ls repo ${repo}`, `exit code ${listed.exitCode}`, { stderr: listed.stderr }),
      )
    }
    const names = new Set<string>()
    for (const line of listed.stdout.split("\n")) {
      const match = ARCHIVED_SEGMENT.exec(line.trim())
      if (match?.[1] !== undefined) names.add(match[1])
    }
    return names
  })

/** The segments of `expected` that repository `repo` lacks (empty when all are there). */
export const missingSegments = (
  env: Readonly<Record<string, string>>,
  repo: number,
  expected: ReadonlyArray<string>,
): Effect.Effect<ReadonlyArray<string>, RigError, CommandExecutor> =>
  Effect.map(segmentsInRepo(env, repo), (present) => expected.filter((name) => !present.has(name)))

/** `archive-get` of `segment` from `repo` into a scratch file: its exit code (0 found, 1 absent). */
export const archiveGet = (
  env: Readonly<Record<string, string>>,
  repo: number,
  segment: string,
  scratchDir: string,
): Effect.Effect<number, RigError, CommandExecutor> =>
  Effect.map(
    runPgBackRest(
      [
        "archive-get",
        `--repo=${repo}`,
        segment,
        path.join(scratchDir, `got-${repo}-${segment}-${Date.now()}`),
      ],
      env,
    ),
    (result) => result.exitCode,
  )

/** Every file and directory under `dir` with its size and modification time, sorted: to prove nothing was written. */
export const fileTree = (dir: string): Effect.Effect<ReadonlyArray<string>, RigError> =>
  Effect.try({
    try: () =>
      fs
        .readdirSync(dir, { recursive: true, encoding: "utf8" })
        .map((entry) => {
          const stat = fs.statSync(path.join(dir, entry))
          return `${entry} ${stat.isDirectory() ? "dir" : stat.size} ${stat.mtimeMs}`
        })
        .sort(),
    catch: (error) => rigError("file tree", String(error)),
  })

/** What a WAL.Archive call answered: `Status.OK` with empty details on success. */
export interface CallOutcome {
  readonly code: Status
  readonly details: string
}

/** A call through the port as a value: OK, or the gRPC refusal (its code and details). */
const outcomeOf = (
  what: string,
  call: Effect.Effect<unknown, CallFailed>,
): Effect.Effect<CallOutcome, RigError> =>
  call.pipe(
    Effect.timeoutFail({ duration: "60 seconds", onTimeout: () => rigError(what, "no answer within 60 s") }),
    Effect.map((): CallOutcome => ({ code: Status.OK, details: "" })),
    Effect.catchTag("CallFailed", (error) =>
      Effect.succeed<CallOutcome>({ code: error.code, details: error.reason }),
    ),
    withLiveClock,
  )

/**
 * `manager wal-archive` through the port of CloudNativePG's plugin client, on the sockets of
 * `pluginDir`: each call is a new invocation (a new connection, LoadPlugin, the capability gate).
 */
export const walArchiveClient = (pluginDir: string) =>
  Effect.succeed(
    (request: WALArchiveRequest): Effect.Effect<CallOutcome, RigError> =>
      outcomeOf(
        "WAL.Archive",
        InstanceManager.archiveWal({
          pluginDir,
          cluster: JSON.parse(Buffer.from(request.clusterDefinition).toString("utf8")),
          walPath: request.sourceFileName,
          ...(request.checkEmptyWalArchive === undefined
            ? {}
            : { checkEmptyWalArchive: request.checkEmptyWalArchive }),
        }),
      ),
  )

/** The command lines of the pgBackRest processes whose environment contains `marker` (e.g. a test's spool path). */
export const pgbackrestProcesses = (
  marker: string,
): ReadonlyArray<{ readonly pid: number; readonly args: string }> =>
  fs
    .readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((entry) => {
      try {
        const args = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " ").trim()
        return args.startsWith("pgbackrest ") &&
          fs.readFileSync(`/proc/${entry}/environ`, "utf8").split("\0").includes(marker)
          ? [{ pid: Number(entry), args }]
          : []
      } catch {
        // Gone meanwhile.
        return []
      }
    })

/**
 * Samples the pgBackRest processes whose environment contains `marker` every `intervalMs` for the scope's
 * lifetime; returns what was seen so far (command lines, deduplicated). Closing the scope SIGKILLs any
 * that are still running, so that a failed test leaves no detached async worker behind.
 */
export const watchPgBackRest = (
  marker: string,
  intervalMs = 10,
): Effect.Effect<() => ReadonlyArray<string>, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.sync(() => {
        const seen = new Set<string>()
        const timer = setInterval(() => {
          for (const process of pgbackrestProcesses(marker)) seen.add(process.args)
        }, intervalMs)
        return { seen, timer }
      }),
      ({ timer }) =>
        Effect.sync(() => {
          clearInterval(timer)
          for (const { pid } of pgbackrestProcesses(marker)) {
            try {
              process.kill(pid, "SIGKILL")
            } catch {
              // Already gone.
            }
          }
        }),
    ),
    ({ seen }) =>
      () => [...seen],
  )

const ManifestObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const asObject = (value: unknown): Record<string, unknown> =>
  Schema.is(ManifestObject)(value) ? { ...value } : {}

/**
 * Writes `<name>.yaml` into the manifests directory: examples/cluster-restored.yaml (the recovery source
 * is the documented Stanza) named `name`, with `bootstrap.recovery.recoveryTarget` when given. Returns
 * its path, for the restore client and the restore_command.
 */
export const writeRestoredCluster = (
  dirs: PluginDirs,
  name: string,
  recoveryTarget?: Readonly<Record<string, string | boolean>>,
): Effect.Effect<string, RigError> =>
  Effect.try({
    try: () => {
      const manifest = asObject(JSON.parse(fs.readFileSync(dirs.restoredClusterFile, "utf8")))
      const spec = asObject(manifest.spec)
      const bootstrap = asObject(spec.bootstrap)
      const recovery = asObject(bootstrap.recovery)
      const cluster = {
        ...manifest,
        metadata: { ...asObject(manifest.metadata), name },
        spec: {
          ...spec,
          bootstrap: {
            ...bootstrap,
            recovery: { ...recovery, ...(recoveryTarget === undefined ? {} : { recoveryTarget }) },
          },
        },
      }
      const file = path.join(dirs.manifestsDir, `${name}.yaml`)
      fs.writeFileSync(file, JSON.stringify(cluster, null, 2), { mode: 0o644 })
      return file
    },
    catch: (error) => rigError("restored cluster manifest", String(error)),
  })

/**
 * `manager wal-restore` through the port of CloudNativePG's plugin client, for the Cluster of
 * `clusterFile`, on the sockets of `pluginDir`; the refusal of the last plugin tried is a value.
 */
export const walRestoreClient = (pluginDir: string, clusterFile: string) =>
  Effect.sync(() => {
    const cluster: unknown = JSON.parse(fs.readFileSync(clusterFile, "utf8"))
    return (walName: string, destination: string): Effect.Effect<CallOutcome, RigError> =>
      outcomeOf("WAL.Restore", InstanceManager.restoreWal({ pluginDir, cluster, walName, destination }))
  })

/** The sidecar's JSON log lines as objects (lines that are not JSON are skipped). */
export const logRecords = (log: string): ReadonlyArray<Record<string, unknown>> =>
  log.split("\n").flatMap((line) => {
    try {
      const value: unknown = JSON.parse(line)
      return Schema.is(ManifestObject)(value) ? [{ ...value }] : []
    } catch {
      return []
    }
  })

/** A cluster restored through the plugin's restore sidecar and promoted, with what the restore took. */
export interface RestoredCluster {
  readonly pg: Postgres
  readonly sidecar: Sidecar
  /** RestoreJobHooks.Restore's answer. */
  readonly restoreConfig: string
  /** postgresql.auto.conf as pgBackRest left it, before the "operator" wrote anything. */
  readonly autoConf: string
  /** The duration of the RestoreJobHooks.Restore call. */
  readonly restoreMs: number
  /** From `pg_ctl start` (recovery begins) until the server was seen promoted. */
  readonly recoveryMs: number
}

/**
 * Restores a new cluster through a restore sidecar of its own (`name`) from the Cluster manifest
 * `clusterFile`, then configures recovery as the operator would: our client as restore_command and
 * `recovery` (e.g. `recovery_target_time = '...'`) in postgresql.conf; waits for the promotion.
 */
export const restoreCluster = (
  dirs: PluginDirs,
  options: {
    readonly name: string
    readonly clusterFile: string
    readonly recovery: ReadonlyArray<string>
    readonly promoteTimeoutMs?: number
    /** More environment for the restore sidecar. */
    readonly sidecarEnv?: Readonly<Record<string, string>>
    /** The restore_command for the restore sidecar's socket directory (default: our CLI client). */
    readonly restoreCommand?: (pluginDir: string) => string
  },
): Effect.Effect<RestoredCluster, RigError, Scope.Scope | FileSystem.FileSystem | CommandExecutor> =>
  Effect.gen(function* () {
    const restored: {
      sidecar?: Sidecar
      restoreConfig?: string
      autoConf?: string
      restoreMs?: number
      startedAt?: number
    } = {}
    const pg = yield* PostgresCluster.make({
      restoreInto: (pgdata) =>
        Effect.gen(function* () {
          const { sidecar, restoreCommand } = yield* restoreSidecarFor(dirs, pgdata, {
            name: options.name,
            clusterFile: options.clusterFile,
            ...(options.sidecarEnv === undefined ? {} : { env: options.sidecarEnv }),
            ...(options.restoreCommand === undefined ? {} : { restoreCommand: options.restoreCommand }),
          })
          yield* sidecar.start()
          restored.sidecar = sidecar
          const started = Date.now()
          const answer = yield* restoreJob(sidecar.pluginDir, options.clusterFile).pipe(
            Effect.mapError((error) => rigError(`restore ${options.name}`, error.message)),
          )
          restored.restoreMs = Date.now() - started
          restored.restoreConfig = answer.restoreConfig
          restored.autoConf = yield* Effect.try({
            try: () => fs.readFileSync(path.join(pgdata, "postgresql.auto.conf"), "utf8"),
            catch: (error) => rigError("postgresql.auto.conf", String(error)),
          })
          // In a pod, the operator writes restore_command (CloudNativePG's wal-restore) and the
          // recovery_target_* settings of the Cluster; here, our client and the test's settings.
          yield* Effect.try({
            try: () =>
              fs.appendFileSync(
                path.join(pgdata, "postgresql.conf"),
                ["", `restore_command = '${restoreCommand}'`, ...options.recovery, ""].join("\n"),
              ),
            catch: (error) => rigError("postgresql.conf", String(error)),
          })
          restored.startedAt = Date.now()
        }),
    })
    yield* eventually(
      `the restored server ${options.name} to promote`,
      pg.psql("SELECT pg_is_in_recovery()"),
      (value) => value === "f",
      options.promoteTimeoutMs ?? 120_000,
    )
    const promotedAt = Date.now()
    const { sidecar, restoreConfig, autoConf, restoreMs, startedAt } = restored
    if (
      sidecar === undefined ||
      restoreConfig === undefined ||
      autoConf === undefined ||
      restoreMs === undefined ||
      startedAt === undefined
    ) {
      return yield* Effect.fail(rigError(`restore ${options.name}`, "the restore did not run"))
    }
    return { pg, sidecar, restoreConfig, autoConf, restoreMs, recoveryMs: promotedAt - startedAt }
  })

/** The rows of table `t` per phase, `A:100 B:100`: what a restored cluster holds. */
export const rowsByPhase = (pg: Postgres): Effect.Effect<string, RigError> =>
  pg.psql(
    "SELECT string_agg(phase || ':' || n, ' ' ORDER BY phase) FROM (SELECT phase, count(*) n FROM t GROUP BY phase) s",
  )

/** Every segment in both repositories of the documented Stanza, as pgBackRest itself reads them. */
export const assertInBothRepositories = (
  pg: Postgres,
  s3: S3Endpoint.S3Endpoint,
  dirs: PluginDirs,
  segments: ReadonlyArray<string>,
) =>
  Effect.gen(function* () {
    const env = yield* verificationEnv(pg, s3, [
      { kind: "s3", path: dirs.s3RepoPath },
      { kind: "posix", path: dirs.posixRepo },
    ])
    for (const segment of segments) {
      for (const repo of ["1", "2"]) {
        const got = yield* runPgBackRest(
          ["archive-get", `--repo=${repo}`, segment, path.join(pg.baseDir, `check-${repo}`)],
          env,
        )
        assert.strictEqual(got.exitCode, 0, `segment ${segment} missing from repo ${repo}: ${got.stderr}`)
      }
    }
  })

/** The WAL files PostgreSQL's server log says it restored from the archive (`restored log file "..." from archive`). */
export const restoredFromArchive = (pg: Postgres): ReadonlyArray<string> =>
  [
    ...fs
      .readFileSync(pg.logFile, "utf8")
      .matchAll(/restored log file "([0-9A-F]{24}|[0-9A-F]{8}\.history)" from archive/g),
  ].flatMap((match) => (match[1] === undefined ? [] : [match[1]]))

/** A running source cluster: its S3 endpoint, plugin directories, PostgreSQL, sidecar, and pgBackRest's own view. */
export interface ArchivingCluster {
  readonly s3: S3Endpoint.S3Endpoint
  readonly dirs: PluginDirs
  readonly pg: Postgres
  readonly sidecar: Sidecar
  /** pgBackRest options for checking the repositories directly (repo 1 on S3, repo 2 posix). */
  readonly env: Readonly<Record<string, string>>
}

/** What {@link startArchivingCluster}'s `prepare` step gets: the endpoint and directories, nothing started yet. */
export interface PrepareSetup {
  readonly s3: S3Endpoint.S3Endpoint
  readonly dirs: PluginDirs
}

export type PrepareContext = Scope.Scope | FileSystem.FileSystem | CommandExecutor

/**
 * The setup most end-to-end tests start from: the HTTPS S3 endpoint, the documented manifests pointed
 * at it plus a posix repository, a PostgreSQL whose archive_command goes through the started sidecar.
 */
export const startArchivingCluster = (options: {
  readonly bucket: string
  /** Merged into `stanzaConfiguration` once the directories exist (e.g. the posix repository's retention). */
  readonly stanza?: (dirs: PluginDirs) => Readonly<Record<string, unknown>>
  /**
   * Runs in the caller's scope once the S3 endpoint, manifests and directories exist, before PostgreSQL
   * and the sidecar start: to put a proxy in front of S3, or a filesystem under the spool.
   */
  readonly prepare?: (setup: PrepareSetup) => Effect.Effect<void, RigError, PrepareContext>
}): Effect.Effect<ArchivingCluster, RigError, Scope.Scope | FileSystem.FileSystem | CommandExecutor> =>
  Effect.gen(function* () {
    const s3 = yield* S3Endpoint.make({ bucket: options.bucket })
    const dirs = yield* preparePlugin({ s3 })
    const stanza = options.stanza
    if (stanza !== undefined) {
      // preparePlugin spreads its `stanza` option over the whole configuration, and the posix repository's
      // path is only known once it returns: change the manifest now, before the sidecar first reads it.
      yield* updateStanza(dirs, (config) => ({ ...config, ...stanza(dirs) }))
    }
    if (options.prepare !== undefined) {
      yield* options.prepare({ s3, dirs })
    }
    const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: dirs.archiveCommand })
    const sidecar = yield* sidecarFor(dirs, pg)
    yield* sidecar.start()
    const env = yield* verificationEnv(pg, s3, [
      { kind: "s3", path: dirs.s3RepoPath },
      { kind: "posix", path: dirs.posixRepo },
    ])
    return { s3, dirs, pg, sidecar, env }
  })
