import { createRequire } from "node:module"
import * as path from "node:path"
import * as Command from "@effect/platform/Command"
import * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import {
  Deferred,
  Duration,
  Effect,
  ExecutionStrategy,
  Exit,
  Option,
  Ref,
  Schedule,
  Scope,
  Stream,
  SynchronizedRef,
} from "effect"
import { BASE_PATH, makeDir, makeTempDir, type RigError, rigError, tail, withLiveClock } from "./exec.js"
import { makeCertificates } from "./tls.js"

/** s3rver's built-in account. */
const ACCESS_KEY = "S3RVER"

/** An HTTPS S3 endpoint (s3rver) owned by a scope, with a CA that pgBackRest can verify it against. */
export interface S3Endpoint {
  /** pgBackRest 2.45 checks the certificate against the host name only (never an IP SAN), so: localhost. */
  readonly host: "localhost"
  readonly port: number
  readonly bucket: string
  readonly region: "us-east-1"
  /** PEM CA certificate, readable by postgres. */
  readonly caFile: string
  readonly accessKeyId: string
  readonly secretAccessKey: string
  /** s3rver's file store: `<dataDir>/<bucket>/<key>._S3rver_object`. */
  readonly dataDir: string
  /** Kills the server; connections are refused until `start`. Does nothing when stopped. */
  readonly stop: () => Effect.Effect<void, RigError>
  /** Starts the server again on the same port over the same data. Does nothing when running. */
  readonly start: () => Effect.Effect<void, RigError>
  readonly isRunning: () => Effect.Effect<boolean>
}

export interface S3Options {
  readonly bucket?: string
  /** How long to wait for the "listening" line, default 30 s. */
  readonly startTimeout?: Duration.DurationInput
}

/** A launched s3rver: closing its scope kills it (a child of the make scope, so that closes it too). */
interface Running {
  readonly scope: Scope.CloseableScope
}

const s3rverScript = path.join(
  path.dirname(createRequire(import.meta.url).resolve("s3rver/package.json")),
  "bin",
  "s3rver.js",
)

const LISTENING = /S3rver listening on \S+:(\d+)/

/**
 * Starts s3rver over HTTPS on 127.0.0.1 with one bucket. Closing the scope kills its process group and
 * removes its directory (certificates and stored objects).
 */
export const make = (
  options: S3Options = {},
): Effect.Effect<
  S3Endpoint,
  RigError,
  Scope.Scope | CommandExecutor.CommandExecutor | FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const executor = yield* CommandExecutor.CommandExecutor
    const fs = yield* FileSystem.FileSystem
    const parent = yield* Effect.scope
    const bucket = options.bucket ?? "pgbackrest"
    const startTimeout = options.startTimeout ?? Duration.seconds(30)

    const baseDir = yield* makeTempDir("rig-s3-", { mode: 0o755 })
    const tlsDir = yield* makeDir(`${baseDir}/tls`, { mode: 0o755 })
    const dataDir = yield* makeDir(`${baseDir}/data`)
    const { caFile, keyFile, certFile } = yield* makeCertificates(tlsDir)

    const command = (port: number) =>
      Command.make(
        process.execPath,
        s3rverScript,
        "-d",
        dataDir,
        "-a",
        "127.0.0.1",
        "-p",
        String(port),
        "--key",
        keyFile,
        "--cert",
        certFile,
        "--silent",
        "--no-vhost-buckets",
        // Must come last: every following argument that does not start with "-" is read as a config file.
        "--configure-bucket",
        bucket,
      ).pipe(
        Command.env(
          // s3rver signs ListObjectsV2 continuation tokens with DES, which OpenSSL 3 keeps in its legacy
          // provider: without it, listing past 1000 keys (a long WAL archive) fails.
          { PATH: BASE_PATH, NODE_OPTIONS: "--openssl-legacy-provider" },
          { extendEnv: false },
        ),
      )

    /** Spawns s3rver in its own scope and returns once it printed its port. */
    const launch = (port: number) =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(parent, ExecutionStrategy.sequential)
        const started = Effect.gen(function* () {
          const proc = yield* Command.start(command(port)).pipe(
            Scope.extend(scope),
            Effect.mapError((e) => rigError("s3rver", e.message)),
          )
          // Runs before Command's own release, which would only SIGTERM the group and wait.
          yield* Scope.addFinalizer(
            scope,
            proc.kill("SIGTERM").pipe(
              Effect.timeout(Duration.seconds(5)),
              Effect.catchAll(() => proc.kill("SIGKILL")),
              Effect.ignore,
              withLiveClock,
            ),
          )
          const stderr = yield* Ref.make("")
          const stderrDone = yield* proc.stderr.pipe(
            Stream.decodeText(),
            Stream.runForEach((chunk) => Ref.update(stderr, (text) => tail(text + chunk, 40))),
            Effect.ignore,
            Effect.forkIn(scope),
          )
          const listening = yield* Deferred.make<number, RigError>()
          const exited = Effect.gen(function* () {
            // stdout closes when s3rver exits: let stderr drain so the error explains why.
            yield* stderrDone.await.pipe(Effect.timeout(Duration.seconds(2)), Effect.ignore)
            const text = yield* Ref.get(stderr)
            yield* Deferred.fail(listening, rigError("s3rver", "exited before listening", { stderr: text }))
          })
          yield* proc.stdout.pipe(
            Stream.decodeText(),
            Stream.splitLines,
            Stream.runForEach((line) => {
              const match = LISTENING.exec(line)
              return match?.[1] === undefined
                ? Effect.void
                : Deferred.succeed(listening, Number.parseInt(match[1], 10))
            }),
            Effect.ignore,
            Effect.zipRight(exited),
            Effect.forkIn(scope),
          )
          const actualPort = yield* Deferred.await(listening).pipe(
            Effect.timeoutFail({
              duration: startTimeout,
              onTimeout: () =>
                rigError("s3rver", `no "listening" line after ${Duration.format(startTimeout)}`),
            }),
          )
          return { running: { scope } satisfies Running, port: actualPort }
        })
        return yield* started.pipe(Effect.onError(() => Scope.close(scope, Exit.void)))
      })

    const state = yield* SynchronizedRef.make(Option.none<Running>())
    const first = yield* launch(0).pipe(withLiveClock)
    yield* SynchronizedRef.set(state, Option.some(first.running))
    const port = first.port

    const start = () =>
      SynchronizedRef.updateEffect(
        state,
        Option.match({
          onSome: (running) => Effect.succeed(Option.some(running)),
          // The old process released the port on exit; retry in case its socket is not closed yet.
          onNone: () =>
            launch(port).pipe(
              Effect.retry(
                Schedule.spaced(Duration.millis(250)).pipe(Schedule.intersect(Schedule.recurs(8))),
              ),
              Effect.map((launched) => Option.some(launched.running)),
            ),
        }),
      ).pipe(
        Effect.provideService(CommandExecutor.CommandExecutor, executor),
        Effect.provideService(FileSystem.FileSystem, fs),
        withLiveClock,
      )

    const stop = () =>
      SynchronizedRef.updateEffect(
        state,
        Option.match({
          onNone: () => Effect.succeed(Option.none<Running>()),
          onSome: (running) => Effect.as(Scope.close(running.scope, Exit.void), Option.none<Running>()),
        }),
      ).pipe(withLiveClock)

    return {
      host: "localhost",
      port,
      bucket,
      region: "us-east-1",
      caFile,
      accessKeyId: ACCESS_KEY,
      secretAccessKey: ACCESS_KEY,
      dataDir,
      stop,
      start,
      isRunning: () => Effect.map(SynchronizedRef.get(state), Option.isSome),
    } satisfies S3Endpoint
  })

/**
 * pgBackRest options for an S3 repository on this endpoint, as `PGBACKREST_REPO<n>_*` variables (secrets
 * never go on a command line). `repoPath` is the absolute path inside the bucket.
 */
export const pgbackrestRepoEnv = (s3: S3Endpoint, repo: number, repoPath: string): Record<string, string> => {
  const prefix = `PGBACKREST_REPO${repo}_`
  return {
    [`${prefix}TYPE`]: "s3",
    [`${prefix}PATH`]: repoPath,
    [`${prefix}S3_BUCKET`]: s3.bucket,
    [`${prefix}S3_ENDPOINT`]: s3.host,
    [`${prefix}STORAGE_PORT`]: String(s3.port),
    [`${prefix}S3_REGION`]: s3.region,
    // s3rver serves buckets as sub-domains only with a DNS wildcard; path style works with "localhost".
    [`${prefix}S3_URI_STYLE`]: "path",
    [`${prefix}S3_KEY`]: s3.accessKeyId,
    [`${prefix}S3_KEY_SECRET`]: s3.secretAccessKey,
    [`${prefix}STORAGE_CA_FILE`]: s3.caFile,
  }
}
