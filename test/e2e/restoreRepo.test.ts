import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Status } from "nice-grpc"
import { takeBackup } from "../../src/cli/pluginClient.js"
import { PgBackRestInfo } from "../../src/domain/pgbackrestInfo.js"
import { InfoJson } from "../../src/domain/pgbackrestOutput.js"
import { makeTempDir, postgresAccount, rigError } from "../rig/exec.js"
import { runPgBackRest } from "../rig/index.js"
import { updateStanza } from "../rig/plugin.js"
import type { Postgres } from "../rig/postgres.js"
import {
  archivedThrough,
  logRecords,
  type RestoredCluster,
  restoreCluster,
  restoredFromArchive,
  rowsByPhase,
  startArchivingCluster,
  walRestoreClient,
  writeRestoredCluster,
} from "./support.js"

/** Segments written (one switch each, with rows) after the backup: what recovery replays. */
const SEGMENTS = 20

/** pgBackRest's io-timeout (seconds) for the restore while S3 is down. */
const IO_TIMEOUT = "0.1"

/** The backups pgBackRest itself lists for stanza main, with their repository. */
const listBackups = (env: Readonly<Record<string, string>>) =>
  Effect.gen(function* () {
    const info = yield* runPgBackRest(["info", "--output=json"], env)
    assert.strictEqual(info.exitCode, 0, info.stderr)
    const stanzas = yield* Schema.decode(InfoJson)(info.stdout).pipe(
      Effect.flatMap(Schema.decodeUnknown(PgBackRestInfo)),
      Effect.mapError((error) => rigError("pgbackrest info", error.message)),
    )
    return (stanzas.find((stanza) => stanza.name === "main")?.backup ?? []).map((backup) => ({
      label: backup.label,
      repo: backup.database["repo-key"],
    }))
  })

const LOG_TIME = /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC /

/** Milliseconds between the server log lines matching `from` and `to` (the log is in UTC). */
const logSpan = (pg: Postgres, from: RegExp, to: RegExp): number | undefined => {
  const lines = fs.readFileSync(pg.logFile, "utf8").split("\n")
  const at = (pattern: RegExp) => {
    const time = LOG_TIME.exec(lines.find((line) => pattern.test(line)) ?? "")?.[1]
    return time === undefined ? undefined : Date.parse(`${time.replace(" ", "T")}Z`)
  }
  const start = at(from)
  const end = at(to)
  return start === undefined || end === undefined ? undefined : end - start
}

/** What one restore cost: the RestoreJobHooks call, and the recovery that followed. */
const measure = (label: string, restored: RestoredCluster) => {
  const segments = restoredFromArchive(restored.pg).filter((name) => !name.endsWith(".history"))
  const replayMs = logSpan(restored.pg, /starting archive recovery/, /archive recovery complete/)
  const numbers = {
    restoreMs: restored.restoreMs,
    recoveryMs: restored.recoveryMs,
    replayMsFromServerLog: replayMs,
    segmentsRestored: segments.length,
    segmentsPerSecond: Number((segments.length / (restored.recoveryMs / 1000)).toFixed(2)),
    segmentsPerSecondFromServerLog:
      replayMs === undefined ? undefined : Number((segments.length / (replayMs / 1000)).toFixed(2)),
  }
  console.info(`${label}: ${JSON.stringify(numbers)}`)
  return numbers
}

layer(NodeContext.layer)("restore from the posix repository (real PostgreSQL 15, pgBackRest)", (it) => {
  it.scoped(
    "a backup in repository 2 only restores, with S3 up and with S3 down; WAL replays through the sidecar",
    () =>
      Effect.gen(function* () {
        const { s3, dirs, pg, sidecar, env } = yield* startArchivingCluster({ bucket: "restore-repo" })

        yield* pg.psql("CREATE TABLE t (id serial PRIMARY KEY, phase text NOT NULL, filler text)")
        yield* pg.psql(
          "INSERT INTO t (phase, filler) SELECT 'A', md5(g::text) FROM generate_series(1, 200000) g",
        )
        const backup = yield* takeBackup(sidecar.pluginDir, {
          clusterFile: dirs.clusterFile,
          backupName: "posix-only",
          parameters: { selectedRepository: "2" },
        }).pipe(Effect.mapError((error) => rigError("backup", error.message)))
        assert.deepStrictEqual(yield* listBackups(env), [{ label: backup.backupId, repo: 2 }])

        let last = ""
        for (let segment = 1; segment <= SEGMENTS; segment++) {
          yield* pg.psql(
            "INSERT INTO t (phase, filler) SELECT 'W', md5(g::text) FROM generate_series(1, 1000) g",
          )
          last = yield* pg.switchWal()
        }
        yield* archivedThrough(pg, last, 120_000)

        // S3 up: the only backup is in repository 2, so the plugin restores from there.
        const clusterFile = yield* writeRestoredCluster(dirs, "cluster-posix")
        const up = yield* restoreCluster(dirs, {
          name: "posix-up",
          clusterFile,
          recovery: ["recovery_target_action = 'promote'"],
        })
        assert.strictEqual(yield* rowsByPhase(up.pg), `A:200000 W:${SEGMENTS * 1000}`)
        const startedUp = logRecords(yield* up.sidecar.log()).filter(
          (record) => record.msg === "restore started",
        )
        assert.deepStrictEqual(
          startedUp.map((record) => [record.backup, record.repository]),
          [[backup.backupId, 2]],
        )
        const upNumbers = measure("S3 up", up)
        assert.isAtLeast(upNumbers.segmentsRestored, SEGMENTS)

        // The same backup set restored by pgBackRest alone, with the same options, into another empty directory.
        const owner = yield* postgresAccount
        const bareDir = yield* makeTempDir("restore-bare-", { owner, mode: 0o700 })
        const bareStarted = Date.now()
        const bare = yield* runPgBackRest(
          ["restore", `--set=${backup.backupId}`, "--repo=2", "--type=none", "--delta=n"],
          { ...env, PGBACKREST_PG1_PATH: bareDir },
        )
        const bareMs = Date.now() - bareStarted
        assert.strictEqual(bare.exitCode, 0, bare.stderr)
        assert.isTrue(fs.existsSync(path.join(bareDir, "PG_VERSION")))
        console.info(`bare pgbackrest restore: ${bareMs} ms; through the plugin: ${up.restoreMs} ms`)
        // The same segments fetched by pgBackRest alone, one archive-get each: the floor under the replay rate.
        const segments = restoredFromArchive(up.pg).filter((name) => !name.endsWith(".history"))
        const getStarted = Date.now()
        for (const segment of segments) {
          const got = yield* runPgBackRest(
            ["archive-get", segment, path.join(bareDir, `got-${segment}`)],
            env,
          )
          assert.strictEqual(got.exitCode, 0, got.stderr)
        }
        const getMs = Date.now() - getStarted
        console.info(
          `bare archive-get of ${segments.length} segments: ${getMs} ms, ${(segments.length / (getMs / 1000)).toFixed(2)} segments/s`,
        )
        // And through the restore sidecar's WAL.Restore alone (gRPC, without a client process per segment).
        const restoreWal = yield* walRestoreClient(up.sidecar.pluginDir, clusterFile)
        const probe = path.join(up.pg.pgdata, "pg_wal", "probe")
        const grpcStarted = Date.now()
        for (const segment of segments) {
          const outcome = yield* restoreWal(segment, probe)
          assert.strictEqual(outcome.code, Status.OK, outcome.details)
          fs.rmSync(probe)
        }
        const grpcMs = Date.now() - grpcStarted
        console.info(
          `WAL.Restore calls for ${segments.length} segments: ${grpcMs} ms, ${(segments.length / (grpcMs / 1000)).toFixed(2)} segments/s`,
        )
        yield* up.pg.stop("fast")

        // S3 down: the backup and the WAL both come from the posix repository.
        yield* s3.stop()
        // pgBackRest retries a refused connection until io-timeout, several times per command (measured with
        // S3 down: info 4 min at the default 60 s, archive-get 25 s per file at 3 s): the restore sidecar,
        // which reads the Stanza when it starts, gets a short one.
        yield* updateStanza(dirs, (config) => ({
          ...config,
          customEnvVar: { PGBACKREST_IO_TIMEOUT: IO_TIMEOUT },
        }))
        // With repository 1 unreadable, the end of the archive cannot be told from an outage: each
        // WAL.Restore past it waits out CNPG_PGBACKREST_WAL_RESTORE_RETRY (10 minutes by default in a
        // recovery Job) before failing, and PostgreSQL then promotes. Shortened here.
        const down = yield* restoreCluster(dirs, {
          name: "posix-down",
          clusterFile,
          recovery: ["recovery_target_action = 'promote'"],
          sidecarEnv: { CNPG_PGBACKREST_WAL_RESTORE_RETRY: "3 seconds" },
        })
        assert.strictEqual(yield* rowsByPhase(down.pg), `A:200000 W:${SEGMENTS * 1000}`)
        const startedDown = logRecords(yield* down.sidecar.log()).filter(
          (record) => record.msg === "restore started",
        )
        assert.deepStrictEqual(
          startedDown.map((record) => [record.backup, record.repository]),
          [[backup.backupId, 2]],
        )
        const downNumbers = measure("S3 down", down)
        assert.isAtLeast(downNumbers.segmentsRestored, SEGMENTS)

        // With repository 1 unreadable, "no readable repository has it" is not "the archive has no such
        // file": the end of the archive is answered UNAVAILABLE, never NOT_FOUND (the instance manager
        // would let PostgreSQL promote on NOT_FOUND; it retries other codes).
        const answers = logRecords(yield* down.sidecar.log())
          .filter((record) => record.rpc === "cnpgi.wal.v1.WAL/Restore")
          .map((record) => String(record.msg))
          // Successes are logged too (at debug), and each read the sidecar repeats (a warning, not an
          // answer): only the answers that are not successes matter here.
          .filter((msg) => msg !== "call succeeded" && !msg.startsWith("WAL file not readable now"))
        assert.isNotEmpty(answers)
        assert.isTrue(
          answers.every((msg) => msg.includes('"_tag":"Unavailable"')),
          `WAL.Restore answers while S3 was down: ${answers.join("\n")}`,
        )
        // A segment only S3 holds (removed from the posix repository after the restore), and one nobody holds.
        const onlyInS3 = segments[segments.length - 1] ?? ""
        const walDir = path.join(dirs.posixRepo, "archive", "main", "15-1", onlyInS3.slice(0, 16))
        for (const file of fs.readdirSync(walDir).filter((name) => name.startsWith(onlyInS3))) {
          fs.rmSync(path.join(walDir, file))
        }
        const restoreDown = yield* walRestoreClient(down.sidecar.pluginDir, clusterFile)
        for (const segment of [onlyInS3, "0000000100000000000000FF"]) {
          const outcome = yield* restoreDown(segment, path.join(down.pg.pgdata, "pg_wal", "probe"))
          assert.strictEqual(outcome.code, Status.UNAVAILABLE, `${segment}: ${outcome.details}`)
          assert.include(outcome.details, "repo1")
          assert.isFalse(fs.existsSync(path.join(down.pg.pgdata, "pg_wal", "probe")))
        }
      }),
    170_000,
  )
})
