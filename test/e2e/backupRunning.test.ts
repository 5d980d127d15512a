import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option } from "effect"
import { Status } from "nice-grpc"
import { withLiveClock } from "../rig/exec.js"
import { runPgBackRest } from "../rig/index.js"
import {
  assertResultMatches,
  type BackupRig,
  backupProcesses,
  byUid,
  infoBackups,
  makeBackupRig,
  refused,
  succeeded,
  waitUntil,
} from "./backupSupport.js"
import { archivedThrough, archiveGet, archiverStats, eventually, readySegments } from "./support.js"

/**
 * What happens while a backup runs: a second request, a cancelled call, WAL archiving. The database holds a
 * 220 MB table so that a full backup takes seconds (about 6 s to the posix repository on two cores).
 */
class Rig extends Context.Tag("test/BackupRunningRig")<Rig, BackupRig>() {}

/** PostgreSQL has nothing left to archive (the table's ~14 segments went through the sidecar). */
const archiveIdle = (rig: BackupRig) =>
  eventually(
    "PostgreSQL to archive every segment",
    readySegments(rig.pg),
    (ready) => ready.length === 0,
    90_000,
  )

const RigLive = Layer.scoped(
  Rig,
  Effect.gen(function* () {
    const rig = yield* makeBackupRig({ bucket: "backup-running" })
    yield* rig.pg.psql(
      "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 10) AS filler FROM generate_series(1, 600000) g",
    )
    yield* rig.pg.switchWal()
    yield* archiveIdle(rig)
    return rig
  }),
).pipe(Layer.provideMerge(NodeContext.layer))

/** The backup sets in the posix repository's directory, complete or not. */
const posixBackupDirs = (rig: BackupRig): ReadonlyArray<string> => {
  const dir = path.join(rig.dirs.posixRepo, "backup", "main")
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => /^\d{8}-\d{6}F/.test(name)) : []
}

/**
 * Starts a backup to the posix repository in the background and returns once pgBackRest copies files
 * (after `pg_backup_start`): a new backup set has a `pg_data` directory.
 */
const startBackup = (rig: BackupRig, signal?: AbortSignal) =>
  Effect.gen(function* () {
    const existing = new Set(posixBackupDirs(rig))
    const fiber = yield* Effect.fork(
      rig.backup({ selectedRepository: "2" }, signal === undefined ? {} : { signal }),
    )
    yield* waitUntil(
      "pgbackrest backup to copy files",
      () =>
        backupProcesses(rig).length > 0 &&
        posixBackupDirs(rig).some(
          (name) =>
            !existing.has(name) &&
            fs.existsSync(path.join(rig.dirs.posixRepo, "backup", "main", name, "pg_data")),
        ),
      15_000,
    )
    return fiber
  })

/** pgBackRest's sessions in PostgreSQL (`application_name` "pgBackRest [backup]"). */
const pgBackRestSessions = (rig: BackupRig) =>
  Effect.map(
    rig.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgBackRest%'"),
    Number,
  )

layer(RigLive, { timeout: "150 seconds" })(
  "Backup.Backup while a backup runs (real PostgreSQL, pgBackRest)",
  (it) => {
    it.effect(
      "a second backup of the stanza is refused at once with FAILED_PRECONDITION; the first succeeds",
      () =>
        Effect.gen(function* () {
          const rig = yield* Rig
          const first = yield* startBackup(rig)
          // One backup per stanza, whatever the repository.
          const sameRepository = yield* rig.backup({ selectedRepository: "2" })
          const otherRepository = yield* rig.backup({ selectedRepository: "1", backupType: "full" })
          for (const call of [sameRepository, otherRepository]) {
            const { code, details } = refused(call)
            assert.strictEqual(code, Status.FAILED_PRECONDITION, details)
            assert.strictEqual(details, "a backup of stanza main is already running on this instance")
            assert.isBelow(call.ms, 2_000)
          }
          assert.isTrue(Option.isNone(yield* Fiber.poll(first)), "the first backup ended before the refusals")

          const done = yield* Fiber.join(first)
          const result = succeeded(done)
          const info = yield* infoBackups(rig.env)
          assertResultMatches(result, byUid(info, 2, done.uid), { repository: 2, type: "full" })
          const uids = info.map((backup) => backup.annotation?.["cnpg-backup-uid"])
          assert.notInclude(uids, sameRepository.uid)
          assert.notInclude(uids, otherRepository.uid)
          console.log(
            `full backup to posix: ${done.ms} ms; refusals answered in ${sameRepository.ms} and ${otherRepository.ms} ms`,
          )
        }),
    )

    it.effect("WAL archiving goes on during a backup, and the backup's own end WAL is archived", () =>
      Effect.gen(function* () {
        const rig = yield* Rig
        const before = yield* archiverStats(rig.pg)
        const running = yield* startBackup(rig)
        const segment = yield* rig.pg.switchWal()
        yield* archivedThrough(rig.pg, segment, 30_000)
        assert.isTrue(
          Option.isNone(yield* Fiber.poll(running)),
          `the backup ended before ${segment} was archived: not a test of archiving during a backup`,
        )

        const done = yield* Fiber.join(running)
        const result = succeeded(done)
        // The segment was written and archived within the backup's WAL range.
        assert.isTrue(
          result.beginWal <= segment && segment < result.endWal,
          `${segment} ${JSON.stringify(result)}`,
        )
        const after = yield* archiverStats(rig.pg)
        assert.strictEqual(after.failed, before.failed)
        assert.isAbove(after.archived, before.archived)
        // pg_stat_archiver's last file may be the backup history file (`<end>.00000028.backup` sorts
        // before the end segment's successor): the repositories themselves say the end WAL is there.
        for (const repo of [1, 2]) {
          for (const wal of [segment, result.endWal]) {
            assert.strictEqual(
              yield* archiveGet(rig.env, repo, wal, rig.pg.baseDir),
              0,
              `${wal} in repo ${repo}`,
            )
          }
        }
      }),
    )

    it.effect("a cancelled backup stops pgBackRest and leaves no lock: the next backup succeeds", () =>
      Effect.gen(function* () {
        const rig = yield* Rig
        const before = yield* infoBackups(rig.env)
        const controller = new AbortController()
        const started = Date.now()
        const cancelled = yield* startBackup(rig, controller.signal)
        yield* Effect.sleep(Math.max(0, 1_000 - (Date.now() - started))).pipe(withLiveClock)
        assert.isTrue(Option.isNone(yield* Fiber.poll(cancelled)), "the backup ended within a second")
        controller.abort()
        const abortedAt = Date.now()
        const outcome = yield* Fiber.join(cancelled)
        assert.strictEqual(refused(outcome).code, Status.CANCELLED)

        yield* waitUntil(
          "every pgbackrest backup process to exit",
          () => backupProcesses(rig).length === 0,
          20_000,
        )
        const goneMs = Date.now() - abortedAt
        yield* eventually(
          "pgBackRest's PostgreSQL sessions to end",
          pgBackRestSessions(rig),
          (n) => n === 0,
          10_000,
        )
        assert.include(yield* rig.sidecar.log(), '"msg":"call cancelled"')
        const partial = posixBackupDirs(rig).filter((name) => !before.some((backup) => backup.label === name))
        const afterCancel = yield* infoBackups(rig.env)
        assert.deepStrictEqual(
          afterCancel.map((backup) => backup.label),
          before.map((backup) => backup.label),
        )

        const next = yield* rig.backup({ selectedRepository: "2" })
        const result = succeeded(next)
        assertResultMatches(result, byUid(yield* infoBackups(rig.env), 2, next.uid), {
          repository: 2,
          type: "full",
        })
        console.log(
          `cancelled backup: pgbackrest gone ${goneMs} ms after the abort; left ${JSON.stringify(partial)}; ` +
            `next backup ${next.ms} ms (${result.backupId})`,
        )
      }),
    )

    it.effect(
      "a full backup through the plugin and one by bare pgbackrest land side by side in the same repository",
      () =>
        Effect.gen(function* () {
          const rig = yield* Rig
          yield* archiveIdle(rig)
          const viaPlugin = yield* rig.backup({ selectedRepository: "1" })
          const pluginResult = succeeded(viaPlugin)
          yield* archiveIdle(rig)
          // The options the sidecar gives pgBackRest (Stanza defaults), with the test's own lock and log paths.
          const bareStarted = Date.now()
          const bare = yield* runPgBackRest(
            ["backup", "--repo=1", "--type=full"],
            {
              ...rig.env,
              PGBACKREST_START_FAST: "y",
              PGBACKREST_DELTA: "y",
              PGBACKREST_LOG_LEVEL_FILE: "off",
            },
            { timeout: "3 minutes" },
          )
          const bareMs = Date.now() - bareStarted
          assert.strictEqual(bare.exitCode, 0, bare.stderr)
          const repo1 = (yield* infoBackups(rig.env)).filter((backup) => backup.database["repo-key"] === 1)
          assert.strictEqual(repo1.at(-2)?.label, pluginResult.backupId)
          console.log(
            `full backup of ${yield* rig.pg.psql("SELECT pg_size_pretty(pg_database_size('postgres'))")} to S3: ` +
              `plugin ${viaPlugin.ms} ms, bare pgbackrest ${bareMs} ms`,
          )
          // Timings are reported, not asserted: `npm run bench` measures the ratio.
        }),
    )
  },
)
