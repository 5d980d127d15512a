import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { Status } from "nice-grpc"
import { PLUGIN_NAME, PLUGIN_VERSION } from "../../src/domain/plugin.js"
import {
  ANNOTATION_BACKUP_NAME,
  ANNOTATION_BACKUP_UID,
  ANNOTATION_CLUSTER,
} from "../../src/instance/backupResult.js"
import { MAIN_JS, NODE } from "../rig/sidecar.js"
import {
  assertResultMatches,
  type BackupRig,
  byUid,
  infoBackups,
  inRepo,
  lsn,
  makeBackupRig,
  POD_NAME,
  refused,
  succeeded,
} from "./backupSupport.js"
import { archiverStats } from "./support.js"

/**
 * Backup.Backup as CloudNativePG's instance manager calls it (nice-grpc over the sidecar's socket), on one
 * small PostgreSQL 15 primary archiving through the plugin to an HTTPS S3 repository (1) and a posix one (2).
 * Every result is checked against `pgbackrest info`, run by the test itself.
 */
class Rig extends Context.Tag("test/BackupRig")<Rig, BackupRig>() {}

const RigLive = Layer.scoped(Rig, makeBackupRig({ bucket: "backup" })).pipe(
  Layer.provideMerge(NodeContext.layer),
)

const labels = (backups: ReadonlyArray<{ readonly label: string }>) => backups.map((backup) => backup.label)

layer(RigLive, { timeout: "120 seconds" })(
  "Backup.Backup (real PostgreSQL, pgBackRest, HTTPS S3, posix)",
  (it) => {
    it.effect(
      "a full backup to repository 1, a full one to repository 2 and an incremental one: each result is exactly that backup",
      () =>
        Effect.gen(function* () {
          const rig = yield* Rig
          yield* rig.pg.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g")

          const full1 = yield* rig.backup()
          const full1Result = succeeded(full1)
          const full2 = yield* rig.backup({ selectedRepository: "2" })
          const full2Result = succeeded(full2)
          yield* rig.pg.psql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g")
          const incr = yield* rig.backup({ backupType: "incr" })
          const incrResult = succeeded(incr)

          const info = yield* infoBackups(rig.env)
          assertResultMatches(full1Result, byUid(info, 1, full1.uid), { repository: 1, type: "full" })
          assertResultMatches(full2Result, byUid(info, 2, full2.uid), { repository: 2, type: "full" })
          // The incremental one builds on the full backup of its own repository, not on repository 2's newer one.
          assertResultMatches(incrResult, byUid(info, 1, incr.uid), {
            repository: 1,
            type: "incr",
            prior: full1Result.backupId,
          })
          assert.notStrictEqual(full1Result.backupId, full2Result.backupId)
          assert.notStrictEqual(incrResult.backupId, full1Result.backupId)
          assert.isTrue(incrResult.backupId.startsWith(full1Result.backupId), incrResult.backupId)
          assert.match(incrResult.backupId, /^\d{8}-\d{6}F_\d{8}-\d{6}I$/)
          // Each starts after the previous one stopped: not one backup reported three times.
          assert.isTrue(lsn(full2Result.beginLsn) > lsn(full1Result.endLsn), full2Result.beginLsn)
          assert.isTrue(lsn(incrResult.beginLsn) > lsn(full2Result.endLsn), incrResult.beginLsn)
          // The default parameters: repository 1, full.
          assert.strictEqual(full1Result.metadata.repository, "1")
          assert.strictEqual(full1Result.metadata.type, "full")
          console.log(`example BackupResult: ${JSON.stringify(incrResult)}`)
          console.log(`backup times (small database): ${full1.ms} ms, ${full2.ms} ms, ${incr.ms} ms`)
        }),
    )

    it.effect("two backups in a row each return their own label, annotated with their own Backup uid", () =>
      Effect.gen(function* () {
        const rig = yield* Rig
        const before = yield* infoBackups(rig.env)
        const first = yield* rig.backup()
        const second = yield* rig.backup()
        const [a, b] = [succeeded(first), succeeded(second)]
        assert.notStrictEqual(a.backupId, b.backupId)
        assert.notStrictEqual(first.uid, second.uid)

        const after = yield* infoBackups(rig.env)
        const added = after.filter((backup) => !labels(before).includes(backup.label))
        assert.sameMembers(labels(added), [a.backupId, b.backupId])
        for (const { call, result } of [
          { call: first, result: a },
          { call: second, result: b },
        ]) {
          const listed = after.find((backup) => backup.label === result.backupId)
          assert.strictEqual(listed?.annotation?.[ANNOTATION_BACKUP_UID], call.uid)
          assert.strictEqual(listed?.annotation?.[ANNOTATION_CLUSTER], "cluster-demo")
          assert.match(listed?.annotation?.[ANNOTATION_BACKUP_NAME] ?? "", /^backup-\d+$/)
          assertResultMatches(result, byUid(after, 1, call.uid), { repository: 1, type: "full" })
        }
      }),
    )

    it.effect(
      "invalid parameters are INVALID_ARGUMENT naming the parameter and its valid values; nothing is backed up",
      () =>
        Effect.gen(function* () {
          const rig = yield* Rig
          const before = labels(yield* infoBackups(rig.env))
          const cases: ReadonlyArray<readonly [Readonly<Record<string, string>>, string]> = [
            [{ selectedRepository: "0" }, 'parameters.selectedRepository: must be between 1 and 2, got "0"'],
            [{ selectedRepository: "3" }, 'parameters.selectedRepository: must be between 1 and 2, got "3"'],
            [{ selectedRepository: "x" }, 'parameters.selectedRepository: must be between 1 and 2, got "x"'],
            [
              { selectedRepository: "-1" },
              'parameters.selectedRepository: must be between 1 and 2, got "-1"',
            ],
            [
              { backupType: "weekly" },
              'parameters.backupType: must be one of full, diff, incr, got "weekly"',
            ],
            [
              { foo: "bar" },
              "parameters.foo: unknown field; expected one of selectedRepository | backupType",
            ],
          ]
          for (const [parameters, message] of cases) {
            const call = yield* rig.backup(parameters)
            const { code, details } = refused(call)
            assert.strictEqual(code, Status.INVALID_ARGUMENT, `${JSON.stringify(parameters)}: ${details}`)
            assert.strictEqual(details, message)
            // Refused before any work: no pgBackRest run, so an answer within well under a second.
            assert.isBelow(call.ms, 2_000, JSON.stringify(parameters))
          }
          assert.deepStrictEqual(labels(yield* infoBackups(rig.env)), before)
        }),
    )

    it.scoped("a backup on a standby is FAILED_PRECONDITION telling to use target: primary", () =>
      Effect.gen(function* () {
        const rig = yield* Rig
        const before = labels(yield* infoBackups(rig.env))
        const signal = path.join(rig.pg.pgdata, "standby.signal")
        // PostgreSQL reads standby.signal only at start: the running primary ignores it, the plugin does not.
        yield* Effect.acquireRelease(
          Effect.sync(() => fs.writeFileSync(signal, "")),
          () => Effect.sync(() => fs.rmSync(signal, { force: true })),
        )
        const call = yield* rig.backup()
        const { code, details } = refused(call)
        assert.strictEqual(code, Status.FAILED_PRECONDITION, details)
        assert.include(details, "standby")
        assert.include(details, "target: primary")
        assert.isBelow(call.ms, 2_000)
        assert.deepStrictEqual(labels(yield* infoBackups(rig.env)), before)
      }),
    )

    it.effect(
      "`client backup` (the CLI) takes a backup and prints the Backup status CloudNativePG would write",
      () =>
        Effect.gen(function* () {
          const rig = yield* Rig
          const before = inRepo(yield* infoBackups(rig.env), 2).length
          const run = yield* Effect.promise(
            () =>
              new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
                const child = spawn(
                  NODE,
                  [
                    MAIN_JS,
                    "client",
                    "backup",
                    "--plugin-path",
                    rig.dirs.pluginDir,
                    "--cluster",
                    rig.dirs.clusterFile,
                    "--parameter",
                    "selectedRepository=2",
                  ],
                  { stdio: ["ignore", "pipe", "pipe"] },
                )
                let stdout = ""
                let stderr = ""
                child.stdout.on("data", (chunk: Buffer) => {
                  stdout += chunk.toString()
                })
                child.stderr.on("data", (chunk: Buffer) => {
                  stderr += chunk.toString()
                })
                child.once("exit", (code) => resolve({ code, stdout, stderr }))
              }),
          )
          assert.strictEqual(run.code, 0, run.stdout + run.stderr)
          const { status } = Schema.decodeUnknownSync(CliOutput)(JSON.parse(run.stdout))

          const backup = (yield* infoBackups(rig.env)).find((b) => b.label === status.backupId)
          assert.isDefined(backup, `${status.backupId} is not in pgbackrest info`)
          if (backup === undefined) return
          assert.strictEqual(backup.database["repo-key"], 2)
          assert.strictEqual(backup.type, "full")
          assert.strictEqual(backup.annotation?.[ANNOTATION_CLUSTER], "cluster-demo")
          assert.match(backup.annotation?.[ANNOTATION_BACKUP_UID] ?? "", /^[0-9a-f-]{36}$/)
          assert.deepStrictEqual(status, {
            phase: "completed",
            method: "plugin",
            backupId: backup.label,
            backupName: backup.label,
            startedAt: new Date(backup.timestamp.start * 1000).toISOString(),
            stoppedAt: new Date(backup.timestamp.stop * 1000).toISOString(),
            beginWal: backup.archive.start ?? "",
            endWal: backup.archive.stop ?? "",
            beginLSN: backup.lsn?.start ?? "",
            endLSN: backup.lsn?.stop ?? "",
            online: true,
            instanceID: { podName: POD_NAME },
            pluginMetadata: {
              plugin: PLUGIN_NAME,
              pluginVersion: PLUGIN_VERSION,
              stanza: "main",
              repository: "2",
              type: "full",
              // The documented Cluster manifest has no uid.
              clusterUid: "",
            },
          })
          // Every backup needs its end WAL archived (through archive_command and the sidecar) to complete.
          const archiver = yield* archiverStats(rig.pg)
          assert.isTrue(archiver.lastArchived >= status.endWal, `${archiver.lastArchived} < ${status.endWal}`)
          assert.strictEqual(archiver.failed, 0)
          assert.lengthOf(inRepo(yield* infoBackups(rig.env), 2), before + 1)
        }),
    )
  },
)

const CliOutput = Schema.Struct({
  status: Schema.Struct({
    phase: Schema.String,
    method: Schema.String,
    backupId: Schema.String,
    backupName: Schema.String,
    startedAt: Schema.String,
    stoppedAt: Schema.String,
    beginWal: Schema.String,
    endWal: Schema.String,
    beginLSN: Schema.String,
    endLSN: Schema.String,
    online: Schema.Boolean,
    instanceID: Schema.Struct({ podName: Schema.String }),
    pluginMetadata: Schema.Record({ key: Schema.String, value: Schema.String }),
  }),
})
