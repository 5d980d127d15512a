import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { byUid, infoBackups, inRepo, makeBackupRig, succeeded } from "./backupSupport.js"

/**
 * Retention after a backup (`pgbackrest expire --repo=N`), on the posix repository only: s3rver lists a
 * prefix without its sub-paths, so expiring on it would not test pgBackRest's real behaviour.
 */
layer(NodeContext.layer, { timeout: "120 seconds" })(
  "Backup retention (real PostgreSQL, pgBackRest)",
  (it) => {
    it.scoped(
      "with full: 2 on the posix repository, a third full backup expires the oldest; repository 1 is untouched",
      () =>
        Effect.gen(function* () {
          const rig = yield* makeBackupRig({
            bucket: "backup-retention",
            stanza: (dirs) => ({
              posixRepositories: [{ repoPath: dirs.posixRepo, retentionPolicy: { full: 2 } }],
            }),
          })
          const onS3 = succeeded(yield* rig.backup())
          const repo1Before = inRepo(yield* infoBackups(rig.env), 1)
          assert.deepStrictEqual(
            repo1Before.map((backup) => backup.label),
            [onS3.backupId],
          )

          const calls = []
          for (let i = 0; i < 3; i++) {
            calls.push(yield* rig.backup({ selectedRepository: "2" }))
          }
          const [oldest, second, third] = calls.map(succeeded)
          const info = yield* infoBackups(rig.env)
          const repo2 = inRepo(info, 2)
          assert.deepStrictEqual(
            repo2.map((backup) => `${backup.label} ${backup.type}`),
            [`${second?.backupId} full`, `${third?.backupId} full`],
          )
          // Found by uid, the survivors are the last two calls' backups; the first call's is gone from disk too.
          for (const call of calls.slice(1)) byUid(info, 2, call.uid)
          const backupDir = path.join(rig.dirs.posixRepo, "backup", "main")
          assert.isFalse(
            fs.existsSync(path.join(backupDir, oldest?.backupId ?? "")),
            "expired backup left on disk",
          )
          assert.isTrue(fs.existsSync(path.join(backupDir, third?.backupId ?? "")))
          // `expire --repo=2` only: repository 1 keeps its backup.
          assert.deepStrictEqual(inRepo(info, 1), repo1Before)
          const log = yield* rig.sidecar.log()
          assert.notInclude(log, "expire after backup failed")
        }),
    )
  },
)
