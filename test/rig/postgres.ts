import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Duration, Effect, Option, Ref, Schedule, type Scope } from "effect"
import {
  appendDetail,
  type ExecResult,
  exec,
  execOk,
  freePort,
  makeDir,
  makeTempDir,
  postgresAccount,
  type RigError,
  rigError,
  tail,
  withLiveClock,
} from "./exec.js"
import { childrenOf, killAll } from "./process.js"

/** Where Debian's postgresql-15 package puts the server binaries. */
export const PG_BIN_DIR = "/usr/lib/postgresql/15/bin"

export interface PostgresOptions {
  /** `archive_mode`, default `off`. */
  readonly archiveMode?: "on" | "off" | "always"
  /** `archive_command`; with `archiveMode: "on"` an empty command keeps every completed segment in pg_wal. */
  readonly archiveCommand?: string
  readonly restoreCommand?: string
  /** Extra `postgresql.conf` lines, appended last (so they win). */
  readonly extraConf?: ReadonlyArray<string>
  /** Extra initdb options, appended after the rig's own (e.g. `--wal-segsize=1`); ignored with `restoreInto`. */
  readonly initdbArgs?: ReadonlyArray<string>
  /**
   * Fills the (empty, postgres-owned) data directory instead of initdb, e.g. with the plugin's restore;
   * the server then starts in archive recovery (recovery.signal) with the options above appended.
   */
  readonly restoreInto?: (
    pgdata: string,
  ) => Effect.Effect<void, RigError, Scope.Scope | CommandExecutor.CommandExecutor | FileSystem.FileSystem>
}

export type StopMode = "smart" | "fast" | "immediate"

/** A running PostgreSQL 15 cluster owned by a scope. Its methods need nothing from the environment. */
export interface Postgres {
  /** Temp dir holding everything below; owned by postgres, removed on scope close. */
  readonly baseDir: string
  readonly pgdata: string
  readonly socketDir: string
  readonly logFile: string
  readonly port: number
  readonly binDir: string
  readonly user: "postgres"
  /** Runs `sql` with psql as postgres over the socket; trimmed stdout (`-XAtq -v ON_ERROR_STOP=1`). */
  readonly psql: (sql: string, database?: string) => Effect.Effect<string, RigError>
  /** Writes a WAL record, switches segment, and returns the name of the segment the switch completed. */
  readonly switchWal: () => Effect.Effect<string, RigError>
  readonly start: () => Effect.Effect<void, RigError>
  /** `pg_ctl stop`, `fast` unless told otherwise. */
  readonly stop: (mode?: StopMode) => Effect.Effect<void, RigError>
  readonly restart: () => Effect.Effect<void, RigError>
  /** Runs any command as postgres; a non-zero exit code is a value. */
  readonly runAsPostgres: (
    command: string,
    args: ReadonlyArray<string>,
    env?: Readonly<Record<string, string>>,
  ) => Effect.Effect<ExecResult, RigError>
}

const quote = (value: string): string => `'${value.replaceAll("'", "''")}'`

const WAL_SEGMENT = /^[0-9A-F]{24}$/

/**
 * Creates, configures and starts a PostgreSQL 15 cluster on 127.0.0.1 and a private socket directory.
 * Closing the scope (success, failure or interruption) stops it in immediate mode, SIGKILLs whatever is
 * left, and removes its directory.
 */
export const make = (
  options: PostgresOptions = {},
): Effect.Effect<Postgres, RigError, Scope.Scope | CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const executor = yield* CommandExecutor.CommandExecutor
    const fs = yield* FileSystem.FileSystem
    const provide = <A, E>(
      self: Effect.Effect<A, E, CommandExecutor.CommandExecutor | FileSystem.FileSystem>,
    ): Effect.Effect<A, E> =>
      self.pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.provideService(FileSystem.FileSystem, fs),
      )

    const owner = yield* postgresAccount
    const baseDir = yield* makeTempDir("rig-pg-", { owner, mode: 0o755 })
    const pgdata = `${baseDir}/data`
    const socketDir = yield* makeDir(`${baseDir}/socket`, { owner, mode: 0o700 })
    const logFile = `${baseDir}/postgresql.log`
    const port = yield* freePort
    const binDir = PG_BIN_DIR

    const asPostgres = (step: string, command: string, args: ReadonlyArray<string>) =>
      execOk(step, command, args, { asPostgres: true, env: { LANG: "C.UTF-8" } })

    const logTail = fs.readFileString(logFile).pipe(
      Effect.map((text) => tail(text)),
      Effect.orElseSucceed(() => "(no server log)"),
    )

    const pgCtl = (step: string, args: ReadonlyArray<string>) =>
      asPostgres(step, `${binDir}/pg_ctl`, ["-D", pgdata, ...args]).pipe(
        Effect.catchTag("RigError", (error) =>
          Effect.flatMap(logTail, (log) => Effect.fail(appendDetail(error, `server log:\n${log}`))),
        ),
      )

    const restoring = options.restoreInto
    if (restoring !== undefined) {
      yield* makeDir(pgdata, { owner, mode: 0o700 })
      yield* restoring(pgdata)
      yield* fs
        .writeFileString(`${pgdata}/recovery.signal`, "")
        .pipe(Effect.mapError((e) => rigError("recovery.signal", e.message)))
      yield* fs
        .chown(`${pgdata}/recovery.signal`, owner.uid, owner.gid)
        .pipe(Effect.mapError((e) => rigError("recovery.signal", e.message)))
    } else
      yield* asPostgres("initdb", `${binDir}/initdb`, [
        "-D",
        pgdata,
        "--data-checksums",
        "-A",
        "trust",
        "-U",
        "postgres",
        "--locale=C",
        "--encoding=UTF8",
        // The cluster lives for one test; fsyncing a fresh data dir costs seconds on a slow disk.
        "--no-sync",
        ...(options.initdbArgs ?? []),
      ])

    const conf = [
      "",
      "# test rig",
      "listen_addresses = '127.0.0.1'",
      `port = ${port}`,
      `unix_socket_directories = ${quote(socketDir)}`,
      "max_connections = 20",
      "shared_buffers = 32MB",
      `archive_mode = ${options.archiveMode ?? "off"}`,
      ...(options.archiveCommand === undefined ? [] : [`archive_command = ${quote(options.archiveCommand)}`]),
      ...(options.restoreCommand === undefined ? [] : [`restore_command = ${quote(options.restoreCommand)}`]),
      ...(options.extraConf ?? []),
      "",
    ].join("\n")
    yield* fs
      .writeFileString(`${pgdata}/postgresql.conf`, conf, { flag: "a" })
      .pipe(Effect.mapError((e) => rigError("postgresql.conf", e.message)))

    // Set before every pg_ctl start (an interrupted start can leave a postmaster behind), cleared by a
    // clean stop, so that the finalizer knows whether to look for a postmaster.
    const mayBeRunning = yield* Ref.make(false)

    const readPostmasterPid = fs.readFileString(`${pgdata}/postmaster.pid`).pipe(
      Effect.map((text) => Number.parseInt(text.split("\n")[0] ?? "", 10)),
      Effect.map(Option.liftPredicate(Number.isInteger)),
      Effect.orElseSucceed(() => Option.none<number>()),
    )

    const forceStop = Effect.gen(function* () {
      if (!(yield* Ref.get(mayBeRunning))) return
      // An interrupted pg_ctl may have forked a postmaster that has not written its pid file yet.
      const pid = yield* readPostmasterPid.pipe(
        Effect.flatten,
        Effect.retry(Schedule.spaced(Duration.millis(100)).pipe(Schedule.intersect(Schedule.recurs(10)))),
        Effect.option,
      )
      if (Option.isNone(pid)) return
      const children = yield* childrenOf(pid.value)
      yield* exec("pg_ctl stop", `${binDir}/pg_ctl`, ["-D", pgdata, "-m", "immediate", "-w", "-t", "30"], {
        asPostgres: true,
        timeout: Duration.seconds(40),
      }).pipe(Effect.ignore)
      yield* killAll([pid.value, ...children], "postgres")
    }).pipe(withLiveClock)

    yield* Effect.addFinalizer(() => provide(forceStop))

    const start = () =>
      Ref.set(mayBeRunning, true).pipe(
        Effect.zipRight(pgCtl("pg_ctl start", ["start", "-l", logFile, "-w", "-t", "60", "-s"])),
        Effect.asVoid,
      )

    const stop = (mode: StopMode = "fast") =>
      pgCtl("pg_ctl stop", ["stop", "-m", mode, "-w", "-t", "60", "-s"]).pipe(
        Effect.zipRight(Ref.set(mayBeRunning, false)),
      )

    const psql = (sql: string, database = "postgres") =>
      asPostgres("psql", `${binDir}/psql`, [
        "-XAtq",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        socketDir,
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        database,
        "-c",
        sql,
      ]).pipe(Effect.map((result) => result.stdout.trim()))

    const switchWal = () =>
      Effect.gen(function* () {
        // pg_switch_wal() does not switch (and names the previous segment) when nothing was written since
        // the last switch. A non-transactional logical message is a WAL record without leaving a table.
        yield* psql("SELECT pg_logical_emit_message(false, 'rig', 'switch')")
        const segment = yield* psql("SELECT pg_walfile_name(pg_switch_wal())")
        return WAL_SEGMENT.test(segment)
          ? segment
          : yield* Effect.fail(rigError("switch wal", `not a WAL segment name: ${segment}`))
      })

    const runAsPostgres = (
      command: string,
      args: ReadonlyArray<string>,
      env: Readonly<Record<string, string>> = {},
    ) => exec(`${command} as postgres`, command, args, { asPostgres: true, env })

    yield* provide(start())

    return {
      baseDir,
      pgdata,
      socketDir,
      logFile,
      port,
      binDir,
      user: "postgres",
      psql: (sql, database) => provide(psql(sql, database)),
      switchWal: () => provide(switchWal()),
      start: () => provide(start()),
      stop: (mode) => provide(stop(mode)),
      restart: () => provide(Effect.zipRight(stop("fast"), start())),
      runAsPostgres: (command, args, env) => provide(runAsPostgres(command, args, env)),
    } satisfies Postgres
  })
