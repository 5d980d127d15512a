import { createHash } from "node:crypto"
import * as FileSystem from "@effect/platform/FileSystem"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Schema } from "effect"
import {
  isAlive,
  isListening,
  makeDir,
  makePgBackRestEnv,
  makeTempDir,
  PostgresCluster,
  postgresAccount,
  runPgBackRest,
  S3Endpoint,
} from "../rig/index.js"

const STANZA = "rig"
const S3_REPO_PATH = "/rig-test"

/** The part of `pgbackrest info --output=json` this test reads. */
const Info = Schema.parseJson(
  Schema.Array(
    Schema.Struct({
      name: Schema.String,
      archive: Schema.Array(
        Schema.Struct({
          database: Schema.Struct({ "repo-key": Schema.Number }),
          id: Schema.String,
          min: Schema.NullOr(Schema.String),
          max: Schema.NullOr(Schema.String),
        }),
      ),
    }),
  ),
)

const postmasterPid = (pgdata: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(`${pgdata}/postmaster.pid`)).pipe(
    Effect.map((text) => Number.parseInt(text.split("\n")[0] ?? "", 10)),
  )

layer(NodeContext.layer)("test rig (real PostgreSQL 15, pgBackRest 2.45, s3rver over HTTPS)", (it) => {
  it.scoped(
    "archive-push of a real WAL segment reaches S3 and posix repositories; archive-get returns it",
    () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        // archive_mode=on with an empty archive_command: PostgreSQL keeps every completed segment (marked
        // .ready) in pg_wal and archives nothing, so the segment this test pushes cannot be recycled under it.
        const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: "" })
        const s3 = yield* S3Endpoint.make({ bucket: "rig-bucket" })
        const owner = yield* postgresAccount
        const work = yield* makeTempDir("rig-e2e-", { owner, mode: 0o755 })
        const repo2 = yield* makeDir(`${work}/repo2`, { owner, mode: 0o750 })
        const env = {
          ...(yield* makePgBackRestEnv(pg)),
          ...S3Endpoint.pgbackrestRepoEnv(s3, 1, S3_REPO_PATH),
          PGBACKREST_REPO2_PATH: repo2,
        }
        const pgbackrest = (...args: ReadonlyArray<string>) =>
          runPgBackRest([`--stanza=${STANZA}`, ...args], env)
        const succeeds = (...args: ReadonlyArray<string>) =>
          Effect.tap(pgbackrest(...args), (result) =>
            assert.strictEqual(result.exitCode, 0, `pgbackrest ${args.join(" ")}:\n${result.stderr}`),
          )

        yield* succeeds("stanza-create")

        const segment = yield* pg.switchWal()
        const walFile = `${pg.pgdata}/pg_wal/${segment}`
        assert.isTrue(yield* fs.exists(`${pg.pgdata}/pg_wal/archive_status/${segment}.ready`))
        const original = yield* fs.readFile(walFile)
        assert.strictEqual(original.length, 16 * 1024 * 1024)

        yield* succeeds("archive-push", walFile)

        for (const repo of [1, 2]) {
          const copy = `${work}/from-repo${repo}`
          yield* succeeds(`--repo=${repo}`, "archive-get", segment, copy)
          const fetched = yield* fs.readFile(copy)
          assert.isTrue(
            Buffer.from(fetched).equals(Buffer.from(original)),
            `repo${repo} returned other bytes`,
          )
        }

        // The stored name carries the SHA-1 of the uncompressed segment, and gzip is the default compression.
        const sha1 = createHash("sha1").update(original).digest("hex")
        const archived = `archive/${STANZA}/15-1/${segment.slice(0, 16)}/${segment}-${sha1}.gz`
        assert.isTrue(yield* fs.exists(`${repo2}/${archived}`), `missing in repo2: ${archived}`)
        assert.isTrue(
          yield* fs.exists(`${s3.dataDir}/${s3.bucket}${S3_REPO_PATH}/${archived}._S3rver_object`),
          `missing in the bucket: ${archived}`,
        )

        const info = yield* succeeds("info", "--output=json").pipe(
          Effect.flatMap((result) => Schema.decodeUnknown(Info)(result.stdout)),
        )
        assert.deepStrictEqual(
          info.map((entry) => entry.name),
          [STANZA],
        )
        const archives = info.find((entry) => entry.name === STANZA)?.archive ?? []
        for (const repoKey of [1, 2]) {
          const range = archives.find((a) => a.database["repo-key"] === repoKey && a.id === "15-1")
          // Segment names of one timeline sort as their positions.
          assert.isTrue(
            range !== undefined && (range.min ?? "~") <= segment && segment <= (range.max ?? ""),
            `repo${repoKey}: ${segment} not within ${JSON.stringify(archives)}`,
          )
        }

        // archive-get says "not found" with exit code 1 (and logs "completed successfully"): that is how
        // PostgreSQL's restore_command learns that recovery reached the end of the archive.
        const never = "0000000100000000000000FE"
        const missing = yield* pgbackrest("archive-get", never, `${work}/never`)
        assert.strictEqual(missing.exitCode, 1, missing.stderr)
        assert.isFalse(yield* fs.exists(`${work}/never`))

        // The endpoint goes away and comes back on the same port with the same objects.
        yield* s3.stop()
        assert.isFalse(yield* isListening(s3.port))
        yield* s3.start()
        assert.isTrue(yield* isListening(s3.port))
        yield* succeeds("--repo=1", "archive-get", segment, `${work}/after-restart`)
        const again = yield* fs.readFile(`${work}/after-restart`)
        assert.isTrue(Buffer.from(again).equals(Buffer.from(original)))
      }),
  )

  it.scoped("a failure midway stops PostgreSQL and s3rver and removes their directories", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const seen = yield* Deferred.make<{ baseDir: string; pid: number; s3Dir: string; s3Port: number }>()
      const exit = yield* Effect.gen(function* () {
        const pg = yield* PostgresCluster.make()
        const s3 = yield* S3Endpoint.make()
        const pid = yield* postmasterPid(pg.pgdata)
        yield* Deferred.succeed(seen, { baseDir: pg.baseDir, pid, s3Dir: s3.dataDir, s3Port: s3.port })
        return yield* Effect.fail("midway")
      }).pipe(Effect.scoped, Effect.exit)
      assert.isTrue(Exit.isFailure(exit))
      const { baseDir, pid, s3Dir, s3Port } = yield* Deferred.await(seen)
      assert.isFalse(yield* isAlive(pid, "postgres"), "postmaster still running")
      assert.isFalse(yield* fs.exists(baseDir))
      assert.isFalse(yield* fs.exists(s3Dir))
      assert.isFalse(yield* isListening(s3Port))
    }),
  )

  it.scoped("interruption stops PostgreSQL and removes its directory", () =>
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const started = yield* Deferred.make<{ baseDir: string; pid: number }>()
      const fiber = yield* Effect.gen(function* () {
        const pg = yield* PostgresCluster.make()
        const pid = yield* postmasterPid(pg.pgdata)
        yield* Deferred.succeed(started, { baseDir: pg.baseDir, pid })
        return yield* Effect.never
      }).pipe(Effect.scoped, Effect.fork)
      const { baseDir, pid } = yield* Deferred.await(started)
      assert.isTrue(yield* isAlive(pid, "postgres"))
      yield* Fiber.interrupt(fiber)
      assert.isFalse(yield* isAlive(pid, "postgres"), "postmaster still running")
      assert.isFalse(yield* fs.exists(baseDir))
    }),
  )
})
