import { statfs } from "node:fs/promises"
import { Command } from "@effect/platform"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Config, Context, Duration, Effect, Layer, Option, Schema, Stream } from "effect"
import { asyncFailureTail, droppedSegments, type SpoolState } from "../domain/archivePush.js"
import { PgBackRestFailed, PgBackRestTimeout, Unavailable } from "../domain/errors.js"
import { childEnvironment, type PgBackRestEnv, secretValues } from "../domain/pgbackrestEnv.js"
import { classifyFailure } from "../domain/pgbackrestFailure.js"
import { type BackupType, decodeInfo } from "../domain/pgbackrestInfo.js"
import {
  failureTail,
  InfoJson,
  type PgBackRestVersion,
  parseVersion,
  redact,
  renderTail,
  TAIL,
  tailWindow,
} from "../domain/pgbackrestOutput.js"
import { boundedRunner } from "./childProcess.js"

/**
 * The default limit of one pgBackRest command's stdout: an `info` of about 10,000 backups. Sized with
 * the heap cap in NODE_FLAGS (`src/cli/nodeFlags.ts`), which leaves room to decode and parse it.
 */
export const MAX_STDOUT_BYTES = 16 * 1024 * 1024

/** How the plugin runs pgBackRest; one value per process, read from the environment by `fromConfig`. */
export class PgBackRestSettings extends Context.Tag("cnpg-pgbackrest/PgBackRestSettings")<
  PgBackRestSettings,
  {
    /** The executable, a path or a name looked up in `path`. */
    readonly binary: string
    /** PATH and HOME of the child: it inherits nothing else from the plugin's environment. */
    readonly path: string
    readonly home: string
    /** Time limit of a command unless the call gives its own. */
    readonly timeout: Duration.Duration
    /** Between SIGTERM and SIGKILL when a command is stopped. */
    readonly killGrace: Duration.Duration
    /** A command whose stdout passes this is stopped and fails. */
    readonly maxStdoutBytes: number
  }
>() {
  // CNPG_PGBACKREST_*, never PGBACKREST_*: pgBackRest reads that namespace as its own options.
  static readonly fromConfig = Layer.effect(
    PgBackRestSettings,
    Config.all({
      binary: Config.string("CNPG_PGBACKREST_BINARY").pipe(
        Config.withDescription("pgBackRest executable (a path, or a name looked up in CNPG_PGBACKREST_PATH)"),
        Config.withDefault("pgbackrest"),
      ),
      path: Config.string("CNPG_PGBACKREST_PATH").pipe(
        Config.withDescription("PATH given to pgBackRest"),
        Config.withDefault("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
      ),
      home: Config.string("CNPG_PGBACKREST_HOME").pipe(
        Config.orElse(() => Config.string("HOME")),
        Config.withDescription("HOME given to pgBackRest (default: the plugin's HOME)"),
        Config.withDefault("/tmp"),
      ),
      timeout: Config.duration("CNPG_PGBACKREST_TIMEOUT").pipe(
        Config.withDescription("time limit of a pgBackRest command when the caller sets none"),
        Config.withDefault(Duration.minutes(30)),
      ),
      killGrace: Config.duration("CNPG_PGBACKREST_KILL_GRACE").pipe(
        Config.withDescription("wait between SIGTERM and SIGKILL when a pgBackRest command is stopped"),
        Config.withDefault(Duration.seconds(10)),
      ),
      maxStdoutBytes: Config.integer("CNPG_PGBACKREST_MAX_STDOUT_BYTES").pipe(
        Config.withDescription("largest stdout kept from one pgBackRest command"),
        // Sized with the heap cap in NODE_FLAGS: raising one means raising the other.
        Config.withDefault(MAX_STDOUT_BYTES),
      ),
    }),
  )
}

export interface RunOptions {
  readonly args?: ReadonlyArray<string>
  readonly env: PgBackRestEnv
  readonly timeout?: Duration.DurationInput
  /** Adds what the caller knows to the failure's text (the spool's free space) before it is reported. */
  readonly explainFailure?: (tail: string) => Effect.Effect<string>
}

export interface CallOptions {
  readonly timeout?: Duration.DurationInput
}

/** `stdout` whole; `stderr` only its tail (warnings of a successful command), secrets redacted. */
export interface RunResult {
  readonly stdout: string
  readonly stderr: string
}

/** What `backup` takes: the repository (1-based), the type, and the annotations it records. */
export interface BackupRequest {
  readonly repository: number
  readonly type: BackupType
  readonly annotations: Readonly<Record<string, string>>
  readonly timeout?: Duration.DurationInput
}

/** `archive-get` of a segment (or history file) the repositories do not hold is not a failure. */
export type ArchiveGetResult = { readonly found: true } | { readonly found: false }

/**
 * pgBackRest, the command-line program: every call runs one child process with its options in the
 * environment (secrets never in argv), a time limit, and bounded memory for its output. A child
 * that is timed out or interrupted (a cancelled gRPC call) is stopped with its whole process group, so
 * the local processes pgBackRest forks for `process-max` > 1 do not outlive it.
 */
export class PgBackRest extends Effect.Service<PgBackRest>()("cnpg-pgbackrest/PgBackRest", {
  effect: Effect.gen(function* () {
    const settings = yield* PgBackRestSettings
    const execute = (yield* boundedRunner)(settings)
    const base = { PATH: settings.path, HOME: settings.home }

    /** Runs `pgbackrest <command> <args>`; a non-zero exit fails with the end of what it printed. */
    const run = Effect.fn("PgBackRest.run")(function* (command: string, options: RunOptions) {
      yield* Effect.annotateCurrentSpan("pgbackrest.command", command)
      const secrets = secretValues(options.env)
      const timeout = Duration.decode(options.timeout ?? settings.timeout)
      // The one place a failure is classified: every reader of it looks at `reason`.
      const failed = (exitCode: number, stderrTail: string) =>
        new PgBackRestFailed({
          command,
          exitCode,
          stderrTail,
          reason: classifyFailure({ exitCode, stderrTail }),
        })
      const result = yield* execute(
        Command.make(settings.binary, command, ...(options.args ?? [])).pipe(
          Command.env(childEnvironment(base, options.env), { extendEnv: false }),
          Command.stdin(Stream.empty),
        ),
        tailWindow(secrets),
      ).pipe(
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new PgBackRestTimeout({ command, timeoutMs: Duration.toMillis(timeout) }),
        }),
        Effect.catchTags({
          OutputTooLarge: ({ limit }) =>
            Effect.fail(failed(-1, `stdout passed ${limit} bytes; pgbackrest was stopped`)),
          // Cannot start (127: not found, 126: not executable, as a shell says) or cannot read a pipe.
          BadArgument: (error) => Effect.fail(failed(-1, redact(error.message, secrets))),
          SystemError: (error) =>
            Effect.fail(
              failed(
                error.method !== "spawn" ? -1 : error.reason === "NotFound" ? 127 : 126,
                redact(error.message, secrets),
              ),
            ),
        }),
      )
      yield* Effect.annotateCurrentSpan("pgbackrest.exitCode", result.exitCode)
      if (result.exitCode !== 0) {
        const tail = failureTail(result.stdout, result.stderr, secrets)
        return yield* failed(
          result.exitCode,
          options.explainFailure ? yield* options.explainFailure(tail) : tail,
        )
      }
      const stderr = renderTail(result.stderr.bytes(), result.stderr.truncated, secrets, TAIL)
      return { stdout: new TextDecoder().decode(result.stdout), stderr } satisfies RunResult
    })

    const version = Effect.fn("PgBackRest.version")(function* () {
      const { stdout } = yield* run("version", { env: {} })
      return yield* Option.match(parseVersion(stdout), {
        onSome: (version): Effect.Effect<PgBackRestVersion> => Effect.succeed(version),
        onNone: () =>
          new PgBackRestFailed({
            command: "version",
            exitCode: 0,
            stderrTail: `unexpected output: ${stdout.slice(0, 200)}`,
            reason: "other",
          }),
      })
    })

    const stanzaCreate = Effect.fn("PgBackRest.stanzaCreate")(function* (
      env: PgBackRestEnv,
      options?: CallOptions,
    ) {
      yield* run("stanza-create", { env, ...options })
    })

    const spoolState = (env: PgBackRestEnv) => {
      const spool = env.PGBACKREST_SPOOL_PATH
      return typeof spool !== "string"
        ? Effect.succeed(undefined)
        : Effect.tryPromise(() => statfs(spool)).pipe(
            Effect.map(
              (stats): SpoolState => ({
                path: spool,
                freeBytes: stats.bavail * stats.bsize,
                freeInodes: stats.ffree,
              }),
            ),
            Effect.orElseSucceed(() => undefined),
          )
    }

    const archivePush = Effect.fn("PgBackRest.archivePush")(function* (
      env: PgBackRestEnv,
      walPath: string,
      options?: CallOptions,
    ) {
      const { stderr } = yield* run("archive-push", {
        env,
        args: [walPath],
        ...options,
        ...(env.PGBACKREST_ARCHIVE_ASYNC === "y"
          ? {
              explainFailure: (tail: string) =>
                Effect.map(spoolState(env), (spool) => asyncFailureTail(tail, spool)),
            }
          : {}),
      })
      const dropped = droppedSegments(stderr)
      if (dropped.length > 0) {
        yield* Effect.logError(
          "pgBackRest DROPPED WAL: the archive push queue is full (Stanza archive.pushQueueMax); " +
            "PostgreSQL counts these segments as archived but no repository holds them, and " +
            "point-in-time recovery across them is impossible: take a new backup once archiving keeps up",
        ).pipe(Effect.annotateLogs({ dropped, stderr }))
      } else if (stderr.trim() !== "") {
        yield* Effect.logWarning("pgbackrest archive-push succeeded with warnings").pipe(
          Effect.annotateLogs({ wal: walPath, stderr }),
        )
      }
    })

    const archiveGet = Effect.fn("PgBackRest.archiveGet")(function* (
      env: PgBackRestEnv,
      walName: string,
      destination: string,
      options?: CallOptions,
    ) {
      return yield* run("archive-get", { env, args: [walName, destination], ...options }).pipe(
        Effect.as<ArchiveGetResult>({ found: true }),
        Effect.catchTag(
          "PgBackRestFailed",
          (error): Effect.Effect<ArchiveGetResult, PgBackRestFailed | Unavailable> => {
            switch (error.reason) {
              case "absent":
                return Effect.succeed<ArchiveGetResult>({ found: false })
              case "repository-unreadable":
                return Effect.fail(
                  new Unavailable({
                    what: `WAL file ${walName}`,
                    reason: `no readable repository holds it, but a repository could not be read: ${error.stderrTail.trim()}`,
                  }),
                )
              // A repository that cannot be reached, or an asynchronous get whose worker did not deliver
              // in time, says nothing about whether the file exists: UNAVAILABLE, so recovery waits.
              case "transient":
              case "archive-timeout":
                return Effect.fail(
                  new Unavailable({
                    what: `WAL file ${walName}`,
                    reason: `a repository could not be read: ${error.message}`,
                  }),
                )
              default:
                return Effect.fail(error)
            }
          },
        ),
      )
    })

    /** `info --output=json`, decoded: the stanzas, their archives and backups. */
    const info = Effect.fn("PgBackRest.info")(function* (env: PgBackRestEnv, options?: CallOptions) {
      const { stdout } = yield* run("info", { env, args: ["--output=json"], ...options })
      const json = yield* Schema.decode(InfoJson)(stdout).pipe(
        Effect.mapError(
          (error) =>
            new PgBackRestFailed({
              command: "info",
              exitCode: 0,
              stderrTail: `output is not JSON: ${error.message}`,
              reason: "other",
            }),
        ),
      )
      return yield* decodeInfo(json)
    })

    /**
     * A backup into one repository, annotated so that `info` can find exactly this one afterwards.
     * pgBackRest's archive-check is off: it refuses any archive_command that does not contain
     * "pgbackrest" (check/common.c, error 068), and CloudNativePG's is always `/controller/manager
     * wal-archive ... %p`. The caller checks the backup's WAL reached the repository instead.
     */
    const backup = Effect.fn("PgBackRest.backup")(function* (env: PgBackRestEnv, request: BackupRequest) {
      yield* run("backup", {
        env: { ...env, PGBACKREST_ARCHIVE_CHECK: "n" },
        args: [
          `--repo=${request.repository}`,
          `--type=${request.type}`,
          ...Object.entries(request.annotations).map(([key, value]) => `--annotation=${key}=${value}`),
        ],
        ...(request.timeout === undefined ? {} : { timeout: request.timeout }),
      })
    })

    /** Retention of one repository, as its Stanza's retention policy says. */
    const expire = Effect.fn("PgBackRest.expire")(function* (
      env: PgBackRestEnv,
      repository: number,
      options?: CallOptions,
    ) {
      yield* run("expire", { env, args: [`--repo=${repository}`], ...options })
    })

    /**
     * Restores backup set `set` of `repository` into the data directory of `env`. `--type=none`:
     * pgBackRest writes no recovery settings of its own (its restore_command would call pgbackrest in
     * the postgres container); the operator configures recovery from the plugin's answer.
     */
    const restore = Effect.fn("PgBackRest.restore")(function* (
      env: PgBackRestEnv,
      backupSet: { readonly label: string; readonly repository: number },
      options?: CallOptions,
    ) {
      yield* run("restore", {
        env,
        args: [`--set=${backupSet.label}`, `--repo=${backupSet.repository}`, "--type=none"],
        ...options,
      })
    })

    const check = Effect.fn("PgBackRest.check")(function* (env: PgBackRestEnv, options?: CallOptions) {
      yield* run("check", { env, ...options })
    })

    return {
      run,
      version,
      stanzaCreate,
      archivePush,
      archiveGet,
      info,
      check,
      backup,
      expire,
      restore,
    } as const
  }),
  dependencies: [PgBackRestSettings.fromConfig, NodeContext.layer],
}) {}
