import { statfs } from "node:fs/promises"
import { Command, CommandExecutor, type Error as PlatformError } from "@effect/platform"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Config, Context, Data, Duration, Effect, Exit, Layer, Option, Schema, Stream } from "effect"
import { asyncFailureTail, droppedSegments, type SpoolState } from "../domain/archivePush.js"
import { PgBackRestFailed, PgBackRestTimeout, Unavailable } from "../domain/errors.js"
import { childEnvironment, type PgBackRestEnv, secretValues } from "../domain/pgbackrestEnv.js"
import { classifyFailure } from "../domain/pgbackrestFailure.js"
import {
  ByteCollector,
  ByteTail,
  failureTail,
  InfoJson,
  type PgBackRestVersion,
  parseVersion,
  redact,
  renderTail,
  signalExitCode,
  TAIL,
  tailWindow,
} from "../domain/pgbackrestOutput.js"
import { MAX_STDOUT_BYTES } from "../domain/plugin.js"

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
}

export interface CallOptions {
  readonly timeout?: Duration.DurationInput
}

/** `stdout` whole; `stderr` only its tail (warnings of a successful command), secrets redacted. */
export interface RunResult {
  readonly stdout: string
  readonly stderr: string
}

/** `archive-get` of a segment (or history file) the repositories do not hold is not a failure. */
export type ArchiveGetResult = { readonly found: true } | { readonly found: false }

/** ArchiveTimeoutError: an asynchronous archive-push or archive-get whose worker did not report in time. */
const ARCHIVE_TIMEOUT = 82

// archive-get exits 1, printing nothing at the default log levels, when no repository holds the file
// (checked on pgBackRest 2.45; pgBackRest's own error codes start at 25).
const ARCHIVE_GET_MISSING = 1

// archive-get also exits 1 when a repository could not be read (a stopped S3 endpoint): pgBackRest
// 2.45 warns `WARN: repo1: [HostConnectError] ...` and reports the file missing if no other repository
// has it. The file may be in the unreadable repository, so that is not an answer of "absent".
const UNREADABLE_REPOSITORY = /^WARN: repo\d+: /m

class OutputTooLarge extends Data.TaggedError("OutputTooLarge")<{ readonly limit: number }> {}

const signalGroup = (pid: number, signal: NodeJS.Signals) =>
  Effect.sync(() => {
    try {
      process.kill(-pid, signal)
    } catch {
      // ESRCH: nothing is left in the group.
    }
  })

// The executor reports a leader killed by a signal as an error that names the signal.
const exitCodeOf = (error: PlatformError.PlatformError): number =>
  signalExitCode(/signal: (SIG[A-Z0-9]+)/.exec(error.message)?.[1])

/**
 * pgBackRest, the command-line program: every call runs one child process with its options in the
 * environment (secrets never in argv), a time limit, and bounded memory for its output. A child
 * that is timed out or interrupted (a cancelled gRPC call) is stopped with its whole process group, so
 * the local processes pgBackRest forks for `process-max` > 1 do not outlive it.
 */
export class PgBackRest extends Effect.Service<PgBackRest>()("cnpg-pgbackrest/PgBackRest", {
  effect: Effect.gen(function* () {
    const settings = yield* PgBackRestSettings
    const executor = yield* CommandExecutor.CommandExecutor
    const base = { PATH: settings.path, HOME: settings.home }

    // @effect/platform-node spawns every child detached (its own process group) and, when the scope
    // closes on a running child, sends SIGTERM to the group and waits without limit. This adds the
    // SIGKILL after the grace period, for the leader and for anything left in its group. pgBackRest's
    // async archiving worker calls setsid() (fork.c, forkDetach), so it is not in this group.
    const stopGroup = (child: CommandExecutor.Process) =>
      Effect.gen(function* () {
        yield* signalGroup(child.pid, "SIGTERM")
        // Finalizers are uninterruptible: the wait must be made interruptible for the timeout to cut it.
        yield* Effect.interruptible(child.exitCode).pipe(Effect.timeout(settings.killGrace), Effect.ignore)
        yield* signalGroup(child.pid, "SIGKILL")
        yield* Effect.ignore(child.exitCode)
      })

    // stdout, stderr and the exit code are awaited together: a child blocked on a full pipe never exits.
    const execute = (command: Command.Command, tailBytes: number) =>
      Effect.gen(function* () {
        const child = yield* Effect.acquireRelease(executor.start(command), (child, exit) =>
          Exit.isSuccess(exit) ? Effect.void : stopGroup(child),
        )
        const stdout = new ByteCollector(settings.maxStdoutBytes)
        const stderr = new ByteTail(tailBytes)
        const [, , exitCode] = yield* Effect.all(
          [
            Stream.runForEach(child.stdout, (chunk) =>
              stdout.push(chunk) ? Effect.void : new OutputTooLarge({ limit: settings.maxStdoutBytes }),
            ),
            Stream.runForEach(child.stderr, (chunk) => Effect.sync(() => stderr.push(chunk))),
            child.exitCode.pipe(Effect.catchAll((error) => Effect.succeed(exitCodeOf(error)))),
          ],
          { concurrency: "unbounded" },
        )
        return { exitCode, stdout: stdout.bytes(), stderr }
      }).pipe(Effect.scoped)

    /** Runs `pgbackrest <command> <args>`; a non-zero exit fails with the end of what it printed. */
    const run = Effect.fn("PgBackRest.run")(function* (command: string, options: RunOptions) {
      yield* Effect.annotateCurrentSpan("pgbackrest.command", command)
      const secrets = secretValues(options.env)
      const timeout = Duration.decode(options.timeout ?? settings.timeout)
      const failed = (exitCode: number, tail: string) =>
        new PgBackRestFailed({ command, exitCode, stderrTail: tail })
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
        return yield* failed(result.exitCode, failureTail(result.stdout, result.stderr, secrets))
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
      const { stderr } = yield* run("archive-push", { env, args: [walPath], ...options }).pipe(
        Effect.catchTag("PgBackRestFailed", (error) =>
          env.PGBACKREST_ARCHIVE_ASYNC !== "y"
            ? Effect.fail(error)
            : Effect.flatMap(spoolState(env), (spool) =>
                Effect.fail(
                  new PgBackRestFailed({ ...error, stderrTail: asyncFailureTail(error.stderrTail, spool) }),
                ),
              ),
        ),
      )
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
        Effect.catchIf(
          (error) => error._tag === "PgBackRestFailed" && error.exitCode === ARCHIVE_GET_MISSING,
          (error) =>
            error._tag === "PgBackRestFailed" && UNREADABLE_REPOSITORY.test(error.stderrTail)
              ? Effect.fail(
                  new Unavailable({
                    what: `WAL file ${walName}`,
                    reason: `no readable repository holds it, but a repository could not be read: ${error.stderrTail.trim()}`,
                  }),
                )
              : Effect.succeed<ArchiveGetResult>({ found: false }),
        ),
        // A repository that cannot be reached, or an asynchronous get whose worker did not deliver in
        // time, says nothing about whether the file exists: UNAVAILABLE, so recovery waits and retries.
        Effect.catchIf(
          (error) =>
            error._tag === "PgBackRestFailed" &&
            (error.exitCode === ARCHIVE_TIMEOUT || classifyFailure(error) === "transient"),
          (error) =>
            Effect.fail(
              new Unavailable({
                what: `WAL file ${walName}`,
                reason: `a repository could not be read: ${error.message}`,
              }),
            ),
        ),
      )
    })

    /** `info --output=json`, parsed but not checked (see `InfoJson`). */
    const info = Effect.fn("PgBackRest.info")(function* (env: PgBackRestEnv, options?: CallOptions) {
      const { stdout } = yield* run("info", { env, args: ["--output=json"], ...options })
      return yield* Schema.decode(InfoJson)(stdout).pipe(
        Effect.mapError(
          (error) =>
            new PgBackRestFailed({
              command: "info",
              exitCode: 0,
              stderrTail: `output is not JSON: ${error.message}`,
            }),
        ),
      )
    })

    const check = Effect.fn("PgBackRest.check")(function* (env: PgBackRestEnv, options?: CallOptions) {
      yield* run("check", { env, ...options })
    })

    return { run, version, stanzaCreate, archivePush, archiveGet, info, check } as const
  }),
  dependencies: [PgBackRestSettings.fromConfig, NodeContext.layer],
}) {}
