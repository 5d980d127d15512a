import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { loadYaml } from "@kubernetes/client-node"
import { Effect } from "effect"
import { readManifest, takeBackup } from "../../src/cli/pluginClient.js"
import { restoreJob } from "../../src/cli/restoreClient.js"
import {
  instanceManagerServer,
  managerBinary,
  managerVersions,
  type RecordedCall,
  rpcRecorder,
} from "../rig/cnpgManager.js"
import { exec, makeTempDir, postgresAccount, rigError, withLiveClock } from "../rig/exec.js"
import { PostgresCluster, S3Endpoint } from "../rig/index.js"
import { PROJECT_ROOT } from "../rig/paths.js"
import { preparePlugin, restoreSidecarFor, sidecarFor } from "../rig/plugin.js"
import { MAIN_JS, NODE } from "../rig/sidecar.js"
import {
  archivedThrough,
  assertInBothRepositories,
  eventually,
  logRecords,
  restoreCluster,
  restoredFromArchive,
  rowsByPhase,
  writeRestoredCluster,
} from "./support.js"

/**
 * CloudNativePG's own instance manager as the plugin's peer: PostgreSQL archives with `manager
 * wal-archive %p` and recovers with `manager wal-restore %f %p`, the binaries built from the module
 * proxy for each version under test/manager/, reading their Cluster from a stand-in for the instance
 * manager's web server. The plugin's sockets sit behind a recorder, so the RPCs each command makes are
 * compared with those of the port (src/cnpg/) doing the same thing.
 */

const POD = "cluster-demo-1"
const RESTORED_POD = "cluster-restored-1"
const REPLICA_POD = "cluster-replica-1"

const WAL_ARCHIVE_SEQUENCE = [
  "/cnpgi.identity.v1.Identity/GetPluginMetadata",
  "/cnpgi.identity.v1.Identity/GetPluginCapabilities",
  "/cnpgi.wal.v1.WAL/GetCapabilities",
  "/cnpgi.backup.v1.Backup/GetCapabilities",
  "/cnpgi.metrics.v1.Metrics/GetCapabilities",
  "/cnpgi.identity.v1.Identity/Probe",
  "/cnpgi.wal.v1.WAL/Archive",
]

/** The RPC paths of each connection, in order: one list per client invocation. */
const byConnection = (calls: ReadonlyArray<RecordedCall>): ReadonlyArray<ReadonlyArray<string>> => {
  const connections = new Map<number, Array<string>>()
  for (const call of calls) {
    connections.set(call.connection, [...(connections.get(call.connection) ?? []), call.path])
  }
  return [...connections.values()]
}

/**
 * What the instance manager's container gives `manager` when PostgreSQL runs it: the plugin socket
 * directory, the pod name, PGDATA (PostgreSQL runs archive and restore commands in it).
 */
const managerScript = (
  dir: string,
  manager: string,
  options: {
    readonly command: "wal-archive" | "wal-restore"
    readonly socketDir: string
    readonly pod: string
  },
) => {
  const script = path.join(dir, `${options.command}-${options.pod}.sh`)
  const log = path.join(dir, `${options.command}-${options.pod}.log`)
  fs.writeFileSync(
    script,
    [
      "#!/bin/sh",
      `exec env PLUGIN_SOCKET_DIR='${options.socketDir}' POD_NAME='${options.pod}' PGDATA="$PWD" \\`,
      `  '${manager}' ${options.command} --log-level debug --log-destination '${log}' "$@"`,
      "",
    ].join("\n"),
    { mode: 0o755 },
  )
  return script
}

const withStatus = (cluster: Record<string, unknown>, pod: string) => ({
  ...cluster,
  status: { currentPrimary: pod, targetPrimary: pod },
})

/**
 * A source cluster that archives through CloudNativePG's `manager wal-archive`, which reaches the
 * sidecar through a recorder in front of its socket, with a table `t`, phase A written and a base
 * backup taken.
 */
const startSource = (version: string, bucket: string) =>
  Effect.gen(function* () {
    const owner = yield* postgresAccount
    const work = yield* makeTempDir(`cnpg-manager-${bucket}-`, { owner, mode: 0o755 })
    const manager = yield* managerBinary(version, work)
    const s3 = yield* S3Endpoint.make({ bucket: `${bucket}-${version.replaceAll(".", "-")}` })
    // A stopped S3 endpoint fails a pgBackRest command within seconds with a 1 s io-timeout.
    const dirs = yield* preparePlugin({ s3, stanza: { customEnvVar: { PGBACKREST_IO_TIMEOUT: "1" } } })
    const cluster = yield* readManifest(dirs.clusterFile, "Cluster").pipe(
      Effect.mapError((error) => rigError("cluster manifest", error.message)),
    )
    const web = yield* instanceManagerServer(withStatus(cluster, POD))
    const socketDir = yield* makeTempDir("cnpg-manager-sockets-", { mode: 0o755 })
    const archive = managerScript(work, manager, { command: "wal-archive", socketDir, pod: POD })
    const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: `${archive} %p` })
    const sidecar = yield* sidecarFor(dirs, pg)
    const recorder = yield* rpcRecorder(sidecar.socket, socketDir)
    yield* sidecar.start()
    yield* pg.psql("CREATE TABLE t (id serial PRIMARY KEY, phase text NOT NULL)")
    yield* pg.psql("INSERT INTO t (phase) SELECT 'A' FROM generate_series(1, 100)")
    yield* takeBackup(sidecar.pluginDir, {
      clusterFile: dirs.clusterFile,
      backupName: "base",
      parameters: {},
    }).pipe(Effect.mapError((error) => rigError("backup", error.message)))
    return { owner, work, manager, s3, dirs, cluster, web, pg, sidecar, recorder, socketDir }
  })

layer(NodeContext.layer, { timeout: "600 seconds" })(
  "CloudNativePG's own manager as the peer (wal-archive, wal-restore; real PostgreSQL 15, pgBackRest, S3)",
  (it) => {
    for (const version of managerVersions) {
      it.scoped(
        `${version}: archives every segment to both repositories, recovers to a time target, and makes the RPCs the port makes`,
        () =>
          Effect.gen(function* () {
            const {
              work,
              manager,
              s3,
              dirs,
              web,
              pg,
              recorder,
              socketDir: recorded,
            } = yield* startSource(version, "manager")
            const segments: Array<string> = []
            for (let i = 0; i < 3; i++) {
              yield* pg.psql("INSERT INTO t (phase) SELECT 'B' FROM generate_series(1, 100)")
              segments.push(yield* pg.switchWal())
            }
            yield* Effect.sleep("1500 millis")
            const targetTime = yield* pg.psql(
              "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'",
            )
            yield* Effect.sleep("1500 millis")
            yield* pg.psql("INSERT INTO t (phase) SELECT 'C' FROM generate_series(1, 100)")
            const last = yield* pg.switchWal()
            segments.push(last)
            yield* archivedThrough(pg, last)

            yield* assertInBothRepositories(pg, s3, dirs, segments)
            // wal-archive reported each success to the instance manager, which sets ContinuousArchiving.
            const conditions = yield* web.conditions()
            assert.isAtLeast(conditions.length, segments.length)
            assert.deepStrictEqual(
              conditions.filter((condition) => condition.error !== undefined),
              [],
              `${version}: wal-archive reported failures`,
            )

            // Each archived segment: a new connection, the handshake, Probe, one Archive.
            const archived = byConnection(yield* recorder.take()).filter((calls) =>
              calls.includes(WAL_ARCHIVE_SEQUENCE[6] ?? ""),
            )
            assert.isAtLeast(archived.length, segments.length)
            for (const calls of archived) assert.deepStrictEqual(calls, WAL_ARCHIVE_SEQUENCE, version)

            // The port against the original, on the same segment: the same RPCs in the same order.
            const walPath = path.join(pg.pgdata, "pg_wal", last)
            const original = yield* exec("manager wal-archive", manager, ["wal-archive", walPath], {
              env: { PLUGIN_SOCKET_DIR: recorded, POD_NAME: POD, PGDATA: pg.pgdata },
            })
            assert.strictEqual(original.exitCode, 0, original.stderr)
            const viaOriginal = byConnection(yield* recorder.take())
            const port = yield* exec("client wal-archive", NODE, [
              MAIN_JS,
              "client",
              "wal-archive",
              "--plugin-path",
              recorded,
              "--cluster",
              dirs.clusterFile,
              walPath,
            ])
            assert.strictEqual(port.exitCode, 0, port.stderr)
            assert.deepStrictEqual(
              byConnection(yield* recorder.take()),
              viaOriginal,
              `${version}: port and original differ`,
            )

            // Recovery to the time target: RestoreJobHooks through the port, then the replay through
            // CloudNativePG's wal-restore, reading the restored Cluster.
            const clusterFile = yield* writeRestoredCluster(dirs, `cluster-${version}`, { targetTime })
            const restoredCluster = yield* readManifest(clusterFile, "Cluster").pipe(
              Effect.mapError((error) => rigError("restored cluster manifest", error.message)),
            )
            yield* web.serve(withStatus(restoredCluster, RESTORED_POD))
            const restored = yield* restoreCluster(dirs, {
              name: `restore-${version}`,
              clusterFile,
              recovery: [`recovery_target_time = '${targetTime}'`, "recovery_target_action = 'promote'"],
              // Shortened from 10 minutes, for the repository-down case below.
              sidecarEnv: { CNPG_PGBACKREST_WAL_RESTORE_RETRY: "4 seconds" },
              restoreCommand: (pluginDir) =>
                `${managerScript(work, manager, { command: "wal-restore", socketDir: pluginDir, pod: RESTORED_POD })} %f %p`,
            })
            assert.strictEqual(
              yield* rowsByPhase(restored.pg),
              "A:100 B:300",
              `${version}: rows after recovery`,
            )
            assert.match(
              fs.readFileSync(restored.pg.logFile, "utf8"),
              /recovery stopping before commit of transaction \d+, time /,
              `${version}: recovery stopped at its target`,
            )
            const replayed = logRecords(yield* restored.sidecar.log()).filter(
              (record) => record.rpc === "cnpgi.wal.v1.WAL/Restore" && record.msg === "call succeeded",
            )
            assert.isAtLeast(replayed.length, 3, `${version}: segments replayed through WAL.Restore`)

            // The port against the original for WAL.Restore too, on a segment the archive holds.
            const restoreSockets = yield* makeTempDir("cnpg-manager-restore-sockets-", { mode: 0o755 })
            const restoreRecorder = yield* rpcRecorder(restored.sidecar.socket, restoreSockets)
            const restoreScript = managerScript(work, manager, {
              command: "wal-restore",
              socketDir: restoreSockets,
              pod: RESTORED_POD,
            })
            const fetched = path.join(restored.pg.pgdata, "pg_wal", "RECOVERYXLOG")
            const restoreCommand = (segment: string) =>
              Effect.gen(function* () {
                const started = Date.now()
                const result = yield* exec(
                  "manager wal-restore",
                  restoreScript,
                  [segment, "pg_wal/RECOVERYXLOG"],
                  {
                    cwd: restored.pg.pgdata,
                  },
                )
                const found = fs.existsSync(fetched)
                fs.rmSync(fetched, { force: true })
                return { exitCode: result.exitCode, found, ms: Date.now() - started }
              })
            assert.deepInclude(yield* restoreCommand(segments[0] ?? ""), { exitCode: 0, found: true })
            const restoreViaOriginal = byConnection(yield* restoreRecorder.take())
            const portRestore = yield* exec("client wal-restore", NODE, [
              MAIN_JS,
              "client",
              "wal-restore",
              "--plugin-path",
              restoreSockets,
              "--cluster",
              clusterFile,
              segments[0] ?? "",
              fetched,
            ])
            assert.strictEqual(portRestore.exitCode, 0, portRestore.stderr)
            fs.rmSync(fetched, { force: true })
            assert.deepStrictEqual(
              byConnection(yield* restoreRecorder.take()),
              restoreViaOriginal,
              `${version}: port and original differ`,
            )
            assert.deepStrictEqual(
              restoreViaOriginal.map((calls) => calls.at(-1)),
              ["/cnpgi.wal.v1.WAL/Restore"],
            )

            // As PostgreSQL sees its restore_command: a segment the archive lacks fails at once; with a
            // repository down, the same answer comes only after the sidecar read it again for its
            // retry time (the file may be there); a segment the other repository holds is restored.
            const missingUp = yield* restoreCommand("0000000100000000000000FE")
            assert.deepInclude(missingUp, { exitCode: 1, found: false })
            assert.isBelow(missingUp.ms, 4_000, `${version}: a missing segment is answered at once`)
            yield* s3.stop()
            const missingDown = yield* restoreCommand("0000000100000000000000FE")
            assert.deepInclude(missingDown, { exitCode: 1, found: false })
            assert.isAtLeast(
              missingDown.ms,
              4_000,
              `${version}: an unreadable repository is read again first`,
            )
            assert.deepInclude(yield* restoreCommand(segments[1] ?? ""), { exitCode: 0, found: true })
            yield* s3.start()
            const log = logRecords(yield* restored.sidecar.log())
            assert.isTrue(
              log.some((record) => String(record.msg).startsWith("WAL file not readable now")),
              `${version}: the sidecar read the unreadable repository again`,
            )
          }).pipe(withLiveClock),
        600_000,
      )

      it.scoped(
        `${version}: a replica cluster follows its source through wal-restore, in standby mode`,
        () =>
          Effect.gen(function* () {
            const {
              owner,
              work,
              manager,
              dirs,
              cluster: source,
              web,
              pg,
            } = yield* startSource(version, "replica")
            const writePhase = (phase: string) =>
              Effect.gen(function* () {
                yield* web.serve(withStatus(source, POD))
                yield* pg.psql(`INSERT INTO t (phase) SELECT '${phase}' FROM generate_series(1, 100)`)
                yield* archivedThrough(pg, yield* pg.switchWal())
              })
            yield* writePhase("B")

            // examples/cluster-replica.yaml: bootstrapped from the source's Stanza, then following it as
            // a standby whose restore_command is CloudNativePG's wal-restore. Only one Cluster can be in
            // the stand-in web server at a time: the source's while it archives, the replica's after.
            const replicaFile = path.join(dirs.manifestsDir, "cluster-replica.yaml")
            const replica = loadYaml<Record<string, unknown>>(
              fs.readFileSync(path.join(PROJECT_ROOT, "examples", "cluster-replica.yaml"), "utf8"),
            )
            fs.writeFileSync(replicaFile, JSON.stringify(replica))
            const following = withStatus(replica, REPLICA_POD)
            yield* web.serve(following)
            let replicaSockets = ""
            const standby = yield* PostgresCluster.make({
              restoreInto: (pgdata) =>
                Effect.gen(function* () {
                  const { sidecar: restoreSidecar } = yield* restoreSidecarFor(dirs, pgdata, {
                    name: "replica",
                    clusterFile: replicaFile,
                  })
                  yield* restoreSidecar.start()
                  replicaSockets = restoreSidecar.pluginDir
                  managerScript(work, manager, {
                    command: "wal-restore",
                    socketDir: restoreSidecar.pluginDir,
                    pod: REPLICA_POD,
                  })
                  yield* restoreJob(restoreSidecar.pluginDir, replicaFile).pipe(
                    Effect.mapError((error) => rigError("replica restore", error.message)),
                  )
                  // standby.signal beside recovery.signal: standby mode wins, and recovery never ends.
                  fs.writeFileSync(path.join(pgdata, "standby.signal"), "")
                  fs.chownSync(path.join(pgdata, "standby.signal"), owner.uid, owner.gid)
                }),
              restoreCommand: `${path.join(work, `wal-restore-${REPLICA_POD}.sh`)} %f %p`,
              extraConf: ["hot_standby = on", "wal_retrieve_retry_interval = '1s'"],
            })
            assert.notStrictEqual(replicaSockets, "")
            const rowsOn = (phase: string) =>
              eventually(
                `${version}: the replica to replay phase ${phase}`,
                standby
                  .psql(`SELECT count(*) FROM t WHERE phase = '${phase}'`)
                  .pipe(Effect.orElseSucceed(() => "0")),
                (count) => count === "100",
                120_000,
              )
            yield* rowsOn("B")
            // The source goes on; the replica follows, segment by segment, still a standby.
            yield* writePhase("C")
            yield* web.serve(following)
            yield* rowsOn("C")
            assert.strictEqual(yield* standby.psql("SELECT pg_is_in_recovery()"), "t")
            assert.isAtLeast(restoredFromArchive(standby).length, 2)
          }).pipe(withLiveClock),
        600_000,
      )
    }
  },
)
