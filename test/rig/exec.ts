import * as net from "node:net"
import * as Command from "@effect/platform/Command"
import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Clock, Data, Duration, Effect, Schedule, type Scope, Stream } from "effect"

/**
 * Every child gets this PATH and nothing else from the test process: a stray `PGBACKREST_*` or `PG*`
 * variable in a developer's shell would otherwise change what pgBackRest or psql does.
 */
export const BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/** A step of the test rig failed: `message` names the step and ends with the tail of its stderr. */
export class RigError extends Data.TaggedError("RigError")<{
  readonly step: string
  readonly message: string
  readonly exitCode?: number
  readonly stderrTail?: string
}> {}

/** The same error with more context appended to its message. */
export const appendDetail = (error: RigError, detail: string): RigError =>
  new RigError({
    step: error.step,
    message: `${error.message}\n${detail}`,
    ...(error.exitCode === undefined ? {} : { exitCode: error.exitCode }),
    ...(error.stderrTail === undefined ? {} : { stderrTail: error.stderrTail }),
  })

/** The last lines of a process's output, for error messages. */
export const tail = (text: string, lines = 15): string => text.trimEnd().split("\n").slice(-lines).join("\n")

export const rigError = (
  step: string,
  detail: string,
  fields: { readonly exitCode?: number; readonly stderr?: string } = {},
): RigError => {
  const stderrTail = fields.stderr === undefined ? undefined : tail(fields.stderr)
  return new RigError({
    step,
    message: stderrTail ? `${step}: ${detail}\n${stderrTail}` : `${step}: ${detail}`,
    ...(fields.exitCode === undefined ? {} : { exitCode: fields.exitCode }),
    ...(stderrTail === undefined ? {} : { stderrTail }),
  })
}

const liveClock = Clock.make()

/**
 * Real processes need real time: `it.effect`/`it.scoped` install a TestClock that never moves on its own,
 * so every wait and timeout in the rig runs on the live clock instead.
 */
export const withLiveClock = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.withClock(self, liveClock)

/** What a finished child process left behind. A non-zero exit code is a value, not an error. */
export interface ExecResult {
  readonly exitCode: number
  readonly stdout: string
  readonly stderr: string
}

export interface ExecOptions {
  /** Added to `PATH=BASE_PATH`; the parent environment is never inherited. */
  readonly env?: Readonly<Record<string, string>>
  readonly cwd?: string
  /** Run through `runuser -u postgres --`, which keeps the environment given here (HOME becomes postgres's). */
  readonly asPostgres?: boolean
  readonly timeout?: Duration.DurationInput
}

const collect = <E>(stream: Stream.Stream<Uint8Array, E>): Effect.Effect<string, E> =>
  stream.pipe(Stream.decodeText(), Stream.mkString)

/**
 * Runs a command to completion, reading stdout and stderr concurrently (a child blocks on a full pipe).
 * Interruption or the timeout kills the child's process group.
 */
export const exec = (
  step: string,
  command: string,
  args: ReadonlyArray<string>,
  options: ExecOptions = {},
): Effect.Effect<ExecResult, RigError, CommandExecutor.CommandExecutor> => {
  const argv = options.asPostgres ? ["runuser", "-u", "postgres", "--", command, ...args] : [command, ...args]
  const [head = command, ...rest] = argv
  const base = Command.make(head, ...rest).pipe(
    Command.env({ PATH: BASE_PATH, ...options.env }, { extendEnv: false }),
  )
  // postgres may not be allowed into the test's working directory, and pg_ctl complains when it is not.
  const cwd = options.cwd ?? (options.asPostgres ? "/" : undefined)
  const cmd = cwd === undefined ? base : Command.workingDirectory(base, cwd)
  const timeout = options.timeout ?? Duration.minutes(2)
  return Effect.gen(function* () {
    const proc = yield* Command.start(cmd)
    const [exitCode, stdout, stderr] = yield* Effect.all(
      [proc.exitCode, collect(proc.stdout), collect(proc.stderr)],
      { concurrency: "unbounded" },
    )
    return { exitCode, stdout, stderr }
  }).pipe(
    Effect.scoped,
    Effect.mapError((error) =>
      rigError(step, `${argv.join(" ")} did not run to an exit code: ${error.message}`),
    ),
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () => rigError(step, `${argv.join(" ")} timed out after ${Duration.format(timeout)}`),
    }),
    withLiveClock,
  )
}

/** Like {@link exec}, but a non-zero exit code fails with the stderr tail. */
export const execOk = (
  step: string,
  command: string,
  args: ReadonlyArray<string>,
  options: ExecOptions = {},
): Effect.Effect<ExecResult, RigError, CommandExecutor.CommandExecutor> =>
  Effect.filterOrFail(
    exec(step, command, args, options),
    (result) => result.exitCode === 0,
    (result) =>
      rigError(step, `${command} exited with ${result.exitCode}`, {
        exitCode: result.exitCode,
        stderr: result.stderr || result.stdout,
      }),
  )

/** Numeric ids of the `postgres` account that the Debian packages create. */
export interface Account {
  readonly uid: number
  readonly gid: number
}

const parseId = (step: string, text: string): Effect.Effect<number, RigError> => {
  const id = Number.parseInt(text.trim(), 10)
  return Number.isInteger(id) ? Effect.succeed(id) : Effect.fail(rigError(step, `not a numeric id: ${text}`))
}

export const postgresAccount: Effect.Effect<Account, RigError, CommandExecutor.CommandExecutor> = Effect.all({
  uid: execOk("id postgres", "id", ["-u", "postgres"]).pipe(
    Effect.flatMap((r) => parseId("id postgres", r.stdout)),
  ),
  gid: execOk("id postgres", "id", ["-g", "postgres"]).pipe(
    Effect.flatMap((r) => parseId("id postgres", r.stdout)),
  ),
})

export interface TempDirOptions {
  /** Give the directory to this account (pgBackRest and PostgreSQL run as postgres). */
  readonly owner?: Account
  readonly mode?: number
}

/**
 * A directory under the system temp dir, removed with everything in it when the scope closes. Files that
 * PostgreSQL wrote belong to postgres; root removes them all the same.
 */
export const makeTempDir = (
  prefix: string,
  options: TempDirOptions = {},
): Effect.Effect<string, RigError, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const dir = yield* Effect.acquireRelease(
      fs.makeTempDirectory({ prefix }).pipe(Effect.mapError((e) => rigError("temp dir", e.message))),
      (dir) =>
        fs.remove(dir, { recursive: true, force: true }).pipe(
          // A process that is still dying may add a file while rm walks the tree.
          Effect.retry(Schedule.spaced(Duration.millis(200)).pipe(Schedule.intersect(Schedule.recurs(10)))),
          Effect.orDie,
          withLiveClock,
        ),
    )
    yield* Effect.gen(function* () {
      if (options.mode !== undefined) yield* fs.chmod(dir, options.mode)
      if (options.owner !== undefined) yield* fs.chown(dir, options.owner.uid, options.owner.gid)
    }).pipe(Effect.mapError((e) => rigError("temp dir", e.message)))
    return dir
  })

/** Creates a sub directory, optionally owned by `owner`. */
export const makeDir = (
  path: string,
  options: TempDirOptions = {},
): Effect.Effect<string, RigError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    yield* fs.makeDirectory(path, {
      recursive: true,
      ...(options.mode === undefined ? {} : { mode: options.mode }),
    })
    if (options.mode !== undefined) yield* fs.chmod(path, options.mode)
    if (options.owner !== undefined) yield* fs.chown(path, options.owner.uid, options.owner.gid)
    return path
  }).pipe(Effect.mapError((e) => rigError(`mkdir ${path}`, e.message)))

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for programs (PostgreSQL) that cannot be told to pick
 * one and report it.
 */
export const freePort: Effect.Effect<number, RigError> = Effect.async<number, RigError>((resume) => {
  const server = net.createServer()
  server.unref()
  server.once("error", (error) => resume(Effect.fail(rigError("free port", error.message))))
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() =>
      resume(port > 0 ? Effect.succeed(port) : Effect.fail(rigError("free port", "no port was assigned"))),
    )
  })
})

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
export const isListening = (port: number): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    const done = (listening: boolean) => {
      socket.destroy()
      resume(Effect.succeed(listening))
    }
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
    return Effect.sync(() => socket.destroy())
  })
