import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Duration, Effect, type Scope } from "effect"
import {
  type ExecResult,
  exec,
  makeDir,
  makeTempDir,
  postgresAccount,
  type RigError,
  rigError,
} from "./exec.js"
import type { Postgres } from "./postgres.js"

/** Where Debian's pgbackrest package puts the binary. */
export const PGBACKREST = "/usr/bin/pgbackrest"

/**
 * Scoped `PGBACKREST_*` environment for one cluster: pg1 over the cluster's socket, and private log, lock and
 * spool directories (owned by postgres) so that parallel tests never share a lock or an async queue.
 */
export const makeLocalEnv = (
  pg: Postgres,
): Effect.Effect<
  Record<string, string>,
  RigError,
  Scope.Scope | FileSystem.FileSystem | CommandExecutor.CommandExecutor
> =>
  Effect.gen(function* () {
    const owner = yield* postgresAccount
    const dir = yield* makeTempDir("rig-pgbackrest-", { owner, mode: 0o755 })
    const fs = yield* FileSystem.FileSystem
    // Debian ships /etc/pgbackrest.conf with [global] repo1-path=/var/lib/pgbackrest, which pgBackRest reads
    // unless told to read another file: an empty one keeps the test's options the only ones.
    const config = `${dir}/pgbackrest.conf`
    yield* fs.writeFileString(config, "").pipe(Effect.mapError((e) => rigError("pgbackrest.conf", e.message)))
    return {
      PGBACKREST_CONFIG: config,
      PGBACKREST_LOG_PATH: yield* makeDir(`${dir}/log`, { owner }),
      PGBACKREST_LOCK_PATH: yield* makeDir(`${dir}/lock`, { owner }),
      PGBACKREST_SPOOL_PATH: yield* makeDir(`${dir}/spool`, { owner }),
      PGBACKREST_PG1_PATH: pg.pgdata,
      PGBACKREST_PG1_SOCKET_PATH: pg.socketDir,
      PGBACKREST_PG1_PORT: String(pg.port),
    }
  })

/**
 * Runs the real pgBackRest as postgres with exactly `env` (plus PATH). Its exit code is a value: archive-get
 * answers 1 for "no such segment" and pgBackRest's error codes (e.g. 55, 103) otherwise.
 */
export const runPgBackRest = (
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>,
  options: { readonly timeout?: Duration.DurationInput } = {},
): Effect.Effect<ExecResult, RigError, CommandExecutor.CommandExecutor> =>
  exec(`pgbackrest ${args.find((arg) => !arg.startsWith("-")) ?? ""}`.trim(), PGBACKREST, args, {
    asPostgres: true,
    env,
    timeout: options.timeout ?? Duration.minutes(2),
  })
