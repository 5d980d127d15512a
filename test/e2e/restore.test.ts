import * as fs from "node:fs"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { backupResource } from "../../src/cli/pluginClient.js"
import * as InstanceManager from "../../src/cnpg/instanceManager.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { archivedThrough, eventually, restoreCluster, startArchivingCluster } from "./support.js"

const cluster = (file: string): Record<string, unknown> => JSON.parse(fs.readFileSync(file, "utf8"))

layer(NodeContext.layer)("restore through the plugin (real PostgreSQL, pgBackRest, HTTPS S3)", (it) => {
  it.scoped("a new cluster restored from the backup replays WAL archived after it: every row is there", () =>
    Effect.gen(function* () {
      const { dirs, pg, sidecar } = yield* startArchivingCluster({ bucket: "restore" })

      yield* pg.psql("CREATE TABLE t (id int PRIMARY KEY, phase text)")
      yield* pg.psql("INSERT INTO t SELECT g, 'before backup' FROM generate_series(1, 1000) g")
      const source = cluster(dirs.clusterFile)
      const result = yield* InstanceManager.takeBackup({
        pluginDir: sidecar.pluginDir,
        pluginName: PLUGIN_NAME,
        cluster: source,
        backup: backupResource(source, { name: "before", parameters: {} }),
        parameters: {},
      })
      assert.match(result.backupId, /^\d{8}-\d{6}F$/)
      // The sidecar refreshes the Stanza status after the backup (local mode writes it next to the manifests).
      const statusFile = `${dirs.manifestsDir}/.status/default/stanzas/stanza-sample.json`
      const status = yield* eventually(
        "the Stanza status to show the backup",
        Effect.sync(() => (fs.existsSync(statusFile) ? fs.readFileSync(statusFile, "utf8") : "")),
        (text) => text.includes(result.backupId),
        30_000,
      )
      const written = JSON.parse(status)
      assert.strictEqual(written.recoveryWindow.lastBackup.label, result.backupId)
      assert.strictEqual(written.backups.full, 1)
      assert.strictEqual(written.lastSuccessfulBackup.label, result.backupId)
      // And the metrics the operator scrapes through the sidecar say the same.
      const [metrics] = yield* InstanceManager.collectMetrics({
        pluginDir: sidecar.pluginDir,
        cluster: source,
      })
      assert.strictEqual(metrics?.plugin, PLUGIN_NAME)
      const values = metrics?.values ?? []
      const value = (name: string, ...labels: ReadonlyArray<string>) =>
        values.find(
          (metric) =>
            metric.fqName === `pgbackrest_dalibo_com_${name}` &&
            labels.every((label, i) => metric.variableLabels[i] === label),
        )?.value
      assert.strictEqual(value("backups", "1", "full"), 1)
      assert.strictEqual(value("last_available_backup_timestamp"), result.stoppedAt)
      assert.strictEqual(value("first_recoverability_point"), result.stoppedAt)
      assert.strictEqual(value("archive_failures_total"), 0)
      yield* pg.psql("INSERT INTO t SELECT g, 'after backup' FROM generate_series(1001, 1500) g")
      yield* archivedThrough(pg, yield* pg.switchWal())

      const restored = yield* restoreCluster(dirs, {
        name: "restore",
        clusterFile: dirs.restoredClusterFile,
        recovery: ["recovery_target_action = 'promote'"],
      })
      assert.include(restored.restoreConfig, "recovery_target_action = promote")
      assert.notInclude(restored.restoreConfig, "recovery_target_time")
      assert.strictEqual(
        yield* restored.pg.psql("SELECT count(*) FROM t WHERE phase = 'before backup'"),
        "1000",
      )
      assert.strictEqual(
        yield* restored.pg.psql("SELECT count(*) FROM t WHERE phase = 'after backup'"),
        "500",
      )
    }),
  )
})
