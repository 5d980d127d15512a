import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Status } from "nice-grpc"
import { backupResource } from "../../src/cli/pluginClient.js"
import * as InstanceManager from "../../src/cnpg/instanceManager.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { makeTempDir, postgresAccount } from "../rig/exec.js"
import { PostgresCluster, S3Endpoint } from "../rig/index.js"
import { type PluginDirs, preparePlugin, restoreSidecarFor, sidecarFor, updateStanza } from "../rig/plugin.js"
import { MAIN_JS } from "../rig/sidecar.js"
import {
  type Canary,
  canary,
  entriesOf,
  type Leak,
  leaksIn,
  type Outcome,
  outcomeOf,
  scanFiles,
  watchProcesses,
} from "./secretsSupport.js"
import {
  archivedThrough,
  archivedThroughNudged,
  archiverStats,
  eventually,
  restoreCluster,
  rowsByPhase,
} from "./support.js"

/**
 * Part of issue 8: the values a user keeps in Secrets (repository cipher passphrases, the S3 secret
 * key) never reach a log line, a gRPC error, a command line (readable by every process of the pod) or
 * a file the plugin writes. Each is a random, recognisable canary, looked for in clear and in base64.
 *
 * s3rver 3.7 looks every access key id up in its accounts (InvalidAccessKeyId otherwise, and
 * `--allow-mismatched-signatures` does not skip that), and its command line cannot add an account to
 * the built-in S3RVER/S3RVER: the access key id stays S3RVER, looked for in clear everywhere but in
 * the S3 store's own files. s3rver does not verify SigV4 signatures at all, so any secret key is
 * accepted: the secret key is a canary.
 */

const ObjectSchema = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const asObject = (value: unknown): Record<string, unknown> =>
  Schema.is(ObjectSchema)(value) ? { ...value } : {}
const asList = (value: unknown): Array<Record<string, unknown>> =>
  Array.isArray(value) ? value.map(asObject) : []
const readJson = (file: string) => asObject(JSON.parse(fs.readFileSync(file, "utf8")))
const writeJson = (file: string, value: unknown) =>
  fs.writeFileSync(file, JSON.stringify(value, null, 2), { mode: 0o644 })

const random = () => crypto.randomBytes(12).toString("hex")
const SECRETS = {
  s3Pass: `CANARY-cipher-s3-${random()}`,
  posixPass: `CANARY-cipher-posix-${random()}`,
  wrongPass: `CANARY-cipher-wrong-${random()}`,
  s3SecretKey: `CANARY-s3-secret-${random()}`,
}
const CANARIES: ReadonlyArray<Canary> = [
  canary("repo1 cipher passphrase", SECRETS.s3Pass),
  canary("repo2 cipher passphrase", SECRETS.posixPass),
  canary("wrong cipher passphrase", SECRETS.wrongPass),
  canary("S3 secret access key", SECRETS.s3SecretKey),
]

const cipher = (key: string) => ({
  type: "aes-256-cbc",
  encryptionPass: { name: "pgbackrest-encryption", key },
})

/**
 * The Secrets as a user applies them (one with `data`, base64, one with `stringData`), both repositories
 * encrypted, async archiving with prefetch and two processes, and two broken Stanzas to provoke errors:
 * one naming a key its Secret lacks, one with the wrong passphrase for the S3 repository.
 */
const writeManifests = (dirs: PluginDirs) =>
  Effect.gen(function* () {
    const secretFile = path.join(dirs.manifestsDir, "secret.yaml")
    const secret = readJson(secretFile)
    writeJson(secretFile, {
      ...secret,
      stringData: { ...asObject(secret.stringData), ACCESS_SECRET_KEY: SECRETS.s3SecretKey },
    })
    writeJson(path.join(dirs.manifestsDir, "secret-encryption.yaml"), {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "pgbackrest-encryption" },
      type: "Opaque",
      data: {
        S3_PASS: Buffer.from(SECRETS.s3Pass).toString("base64"),
        POSIX_PASS: Buffer.from(SECRETS.posixPass).toString("base64"),
      },
      stringData: { WRONG_PASS: SECRETS.wrongPass },
    })
    yield* updateStanza(dirs, (config) => ({
      ...config,
      logLevel: "detail",
      processMax: 2,
      archive: { async: true, getQueueMax: "64MiB" },
      // A stopped endpoint fails a command after about ten io-timeouts (see walOutage.test.ts).
      customEnvVar: { PGBACKREST_IO_TIMEOUT: "1" },
      s3Repositories: asList(config.s3Repositories).map((repo) => ({
        ...repo,
        cipherConfig: cipher("S3_PASS"),
      })),
      posixRepositories: asList(config.posixRepositories).map((repo) => ({
        ...repo,
        cipherConfig: cipher("POSIX_PASS"),
      })),
    }))
    const stanza = readJson(path.join(dirs.manifestsDir, "stanza.yaml"))
    const config = asObject(asObject(stanza.spec).stanzaConfiguration)
    const variant = (name: string, change: Record<string, unknown>) =>
      writeJson(path.join(dirs.manifestsDir, `${name}.yaml`), {
        ...stanza,
        metadata: { name },
        spec: { stanzaConfiguration: { ...config, ...change } },
      })
    const s3Repositories = asList(config.s3Repositories)
    variant("stanza-missing-key", {
      s3Repositories: s3Repositories.map((repo) => ({ ...repo, cipherConfig: cipher("NO_SUCH_KEY") })),
    })
    variant("stanza-wrong-pass", {
      s3Repositories: s3Repositories.map((repo) => ({ ...repo, cipherConfig: cipher("WRONG_PASS") })),
      posixRepositories: [],
    })
  })

/** The Cluster with its plugin pointed at another Stanza. */
const withStanza = (cluster: Record<string, unknown>, stanzaRef: string) => {
  const spec = asObject(cluster.spec)
  return {
    ...cluster,
    spec: {
      ...spec,
      plugins: asList(spec.plugins).map((plugin) => ({ ...plugin, parameters: { stanzaRef } })),
    },
  }
}

layer(NodeContext.layer)("secrets stay secret (real PostgreSQL, pgBackRest, HTTPS S3)", (it) => {
  it.scoped(
    "no cipher passphrase or S3 secret key in logs, gRPC errors, command lines or written files",
    () =>
      Effect.gen(function* () {
        const started = Date.now()
        const owner = yield* postgresAccount
        const tempRoots = ["/tmp", "/var/tmp", "/dev/shm"]
        const tempBefore = entriesOf(tempRoots)
        const s3 = yield* S3Endpoint.make({ bucket: "secrets" })
        const dirs = yield* preparePlugin({ s3 })
        yield* writeManifests(dirs)
        const accessKey: Canary = {
          name: "S3 access key id",
          value: s3.accessKeyId,
          forms: [{ form: "plain", text: s3.accessKeyId }],
        }
        const everywhere = [...CANARIES, accessKey]

        // Every process started from a command line naming this test's directory (the sidecars, the
        // clients PostgreSQL runs) and all their descendants, every 15 ms.
        const watch = yield* watchProcesses(
          (line) => line.includes(MAIN_JS) && line.includes(dirs.baseDir),
          dirs.baseDir,
          15,
        )
        const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: dirs.archiveCommand })
        const sidecar = yield* sidecarFor(dirs, pg)
        yield* sidecar.start()

        yield* pg.psql("CREATE TABLE t (id int PRIMARY KEY, phase text)")
        yield* pg.psql("INSERT INTO t SELECT g, 'A' FROM generate_series(1, 1000) g")
        const firstSegment = yield* pg.switchWal()
        yield* archivedThrough(pg, firstSegment)
        // Both repositories are encrypted: pgBackRest wrote its info files with OpenSSL's salted format.
        for (const file of ["archive/main/archive.info", "backup/main/backup.info"]) {
          assert.strictEqual(
            fs.readFileSync(path.join(dirs.posixRepo, file)).subarray(0, 8).toString("latin1"),
            "Salted__",
            `${file} of the posix repository is not encrypted`,
          )
        }

        // The API server gives every object a uid; the documented manifest has none.
        const manifest = readJson(dirs.clusterFile)
        const source = { ...manifest, metadata: { ...asObject(manifest.metadata), uid: crypto.randomUUID() } }
        const outcomes: Array<Outcome> = []
        const record = (outcome: Outcome, expected: "ok" | "refused") => {
          outcomes.push(outcome)
          if (expected === "ok") {
            assert.strictEqual(outcome.code, Status.OK, `${outcome.what}: ${outcome.details}`)
          } else {
            assert.notStrictEqual(outcome.code, Status.OK, `${outcome.what} succeeded`)
          }
        }
        // Every call goes through the port of CloudNativePG's plugin client, as the instance manager makes it.
        const backup = (
          what: string,
          cluster: Record<string, unknown>,
          parameters: Record<string, string> = {},
        ) =>
          outcomeOf(
            what,
            InstanceManager.takeBackup({
              pluginDir: sidecar.pluginDir,
              pluginName: PLUGIN_NAME,
              cluster,
              backup: backupResource(cluster, { parameters }),
              parameters,
            }),
          )
        const archive = (what: string, cluster: Record<string, unknown>, file: string) =>
          outcomeOf(
            what,
            InstanceManager.archiveWal({ pluginDir: sidecar.pluginDir, cluster, walPath: file }),
          )
        const restoreWal = (
          what: string,
          pluginDir: string,
          cluster: Record<string, unknown>,
          name: string,
          pgdata: string,
        ) =>
          outcomeOf(
            what,
            InstanceManager.restoreWal({
              pluginDir,
              cluster,
              walName: name,
              destination: path.join(pgdata, "pg_wal", "RECOVERYXLOG"),
            }),
          )
        const walFile = (name: string) => path.join(pg.pgdata, "pg_wal", name)

        record(yield* backup("Backup.Backup, full, repository 1", source), "ok")

        // Bad requests and broken Stanzas, S3 up.
        record(
          yield* backup("Backup.Backup, selectedRepository 0", source, { selectedRepository: "0" }),
          "refused",
        )
        record(yield* backup("Backup.Backup, backupType weekly", source, { backupType: "weekly" }), "refused")
        record(
          yield* archive(
            "WAL.Archive, a file that does not exist",
            source,
            walFile("0000000100000000000000FE"),
          ),
          "refused",
        )
        record(
          yield* archive(
            "WAL.Archive, no such Stanza",
            withStanza(source, "no-such-stanza"),
            walFile(firstSegment),
          ),
          "refused",
        )
        record(
          yield* archive(
            "WAL.Archive, Stanza naming a key its Secret lacks",
            withStanza(source, "stanza-missing-key"),
            walFile(firstSegment),
          ),
          "refused",
        )
        record(
          yield* restoreWal(
            "WAL.Restore, a segment no repository holds",
            sidecar.pluginDir,
            source,
            "0000000100000000000000FE",
            pg.pgdata,
          ),
          "refused",
        )
        record(
          yield* restoreWal(
            "WAL.Restore, wrong cipher passphrase",
            sidecar.pluginDir,
            withStanza(source, "stanza-wrong-pass"),
            firstSegment,
            pg.pgdata,
          ),
          "refused",
        )
        record(
          yield* backup("Backup.Backup, wrong cipher passphrase", withStanza(source, "stanza-wrong-pass")),
          "refused",
        )

        // S3 stopped: PostgreSQL's own archiving fails, and so does every call that needs repository 1.
        const outagePgData = yield* makeTempDir("restore-outage-pgdata-", { owner, mode: 0o700 })
        // WAL.Restore waits out an unreadable repository (10 minutes in a recovery Job): shortened here.
        const outage = yield* restoreSidecarFor(dirs, outagePgData, {
          name: "restore-outage",
          env: { CNPG_PGBACKREST_WAL_RESTORE_RETRY: "3 seconds" },
        })
        yield* outage.sidecar.start()
        const restored = readJson(dirs.restoredClusterFile)
        yield* s3.stop()
        const healthy = yield* archiverStats(pg)
        const duringOutage = yield* pg.switchWal()
        const outageCalls = yield* Effect.all(
          [
            archive("WAL.Archive while S3 is stopped", source, walFile(duringOutage)),
            backup("Backup.Backup while S3 is stopped", source),
            restoreWal(
              "WAL.Restore while S3 is stopped",
              sidecar.pluginDir,
              source,
              "0000000100000000000000FE",
              pg.pgdata,
            ),
            restoreWal(
              "WAL.Restore (restore sidecar) while S3 is stopped",
              outage.sidecar.pluginDir,
              restored,
              "0000000100000000000000FE",
              outagePgData,
            ),
            outcomeOf(
              "RestoreJobHooks.Restore while S3 is stopped",
              InstanceManager.restoreJob({ pluginDir: outage.sidecar.pluginDir, cluster: restored }),
            ),
          ],
          { concurrency: "unbounded" },
        )
        for (const outcome of outageCalls) record(outcome, "refused")
        yield* eventually(
          "PostgreSQL's archiving to fail while S3 is stopped",
          archiverStats(pg),
          (stats) => stats.failed > healthy.failed,
          120_000,
        )
        yield* s3.start()
        yield* archivedThroughNudged(pg, duringOutage, 180_000)

        yield* pg.psql("INSERT INTO t SELECT g, 'B' FROM generate_series(1001, 1500) g")
        yield* archivedThrough(pg, yield* pg.switchWal())
        const copy = yield* restoreCluster(dirs, {
          name: "restore",
          clusterFile: dirs.restoredClusterFile,
          recovery: ["recovery_target_action = 'promote'"],
        })
        assert.strictEqual(yield* rowsByPhase(copy.pg), "A:1000 B:500")

        const processes = yield* watch.stop()

        // 1. Log lines of every sidecar.
        const logs = [
          ["instance sidecar", yield* sidecar.log()],
          ["restore sidecar", yield* copy.sidecar.log()],
          ["restore sidecar (S3 stopped)", yield* outage.sidecar.log()],
        ] as const
        const logLines = logs.flatMap(([name, log]) =>
          log
            .split("\n")
            .filter((line) => line.trim() !== "")
            .map((line, index) => ({ where: `${name} log line ${index + 1}`, line })),
        )
        for (const [name, log] of logs) assert.isAbove(log.split("\n").length, 3, `${name} logged nothing`)
        const leaks: Array<Leak> = logLines.flatMap(({ where, line }) => leaksIn(where, line, everywhere))

        // 2. Every gRPC answer: code, details (gRPC's grpc-message trailer), the client's message.
        const refusals = outcomes.filter((outcome) => outcome.code !== Status.OK)
        for (const outcome of outcomes) {
          const text = [outcome.details, outcome.message].join("\n")
          leaks.push(...leaksIn(`gRPC ${outcome.what}`, text, everywhere))
        }

        // 3. The command line of every process of the plugin and of its descendants.
        const cmdlines = processes.flatMap((seen) => [...seen.cmdlines])
        for (const seen of processes) {
          for (const line of seen.cmdlines) {
            leaks.push(...leaksIn(`command line of pid ${seen.pid}: ${line}`, line, everywhere))
          }
        }
        const pgbackrest = processes.filter((seen) => seen.comms.has("pgbackrest"))
        // `pgbackrest [--option=value ...] <command>[:role] [argument]`, e.g. `... backup:local`.
        const commands = new Set(
          pgbackrest.flatMap((seen) =>
            [...seen.cmdlines]
              .filter((line) => /^(\S*\/)?pgbackrest /.test(line))
              .flatMap((line) =>
                line
                  .split(" ")
                  .slice(1)
                  .filter((word) => /^[a-z-]+(:[a-z]+)?$/.test(word)),
              ),
          ),
        )
        for (const command of [
          "stanza-create",
          "archive-push",
          "archive-push:async",
          "backup",
          "info",
          "restore",
          "archive-get",
        ]) {
          assert.isTrue(
            commands.has(command),
            `no pgbackrest ${command} seen among ${[...commands].join(", ")}`,
          )
        }
        assert.isTrue(
          commands.has("backup:local") || commands.has("restore:local"),
          "no local process of processMax 2 seen",
        )
        // The secrets were in play: pgBackRest got them, in its environment (readable by its own user only).
        for (const secret of [SECRETS.s3Pass, SECRETS.posixPass, SECRETS.s3SecretKey]) {
          assert.isTrue(
            pgbackrest.some((seen) => seen.environment?.includes(secret) === true),
            "no pgbackrest process had a secret in its environment",
          )
        }
        for (const role of ["instance", "restore"]) {
          assert.isTrue(
            pgbackrest.some((seen) => seen.origin.includes(`${MAIN_JS} ${role} `)),
            `no pgbackrest child of the ${role} sidecar seen`,
          )
        }

        // 4. Every file the plugin (and pgBackRest under it) wrote, except the manifests the user wrote.
        const userManifest = (file: string) =>
          path.dirname(file) === dirs.manifestsDir && file.endsWith(".yaml")
        const ours = scanFiles(
          [dirs.baseDir, outagePgData, copy.pg.baseDir, pg.baseDir],
          everywhere,
          userManifest,
        )
        // The search itself works: the manifests the user wrote hold the secrets, in clear and in base64.
        const control = scanFiles([dirs.manifestsDir], CANARIES, (file) => !userManifest(file))
        assert.includeMembers(
          control.leaks.map((leak) => `${leak.canary} ${leak.form}`),
          [
            "repo1 cipher passphrase base64+0",
            "repo2 cipher passphrase base64+0",
            "S3 secret access key plain",
          ],
        )
        const store = scanFiles([s3.dataDir], CANARIES)
        const appeared = [...entriesOf(tempRoots)].filter(
          (entry) =>
            !tempBefore.has(entry) &&
            !/^(rig-|cnpg-pgbackrest-plugin-|restore-|bench-)/.test(path.basename(entry)) &&
            (fs.lstatSync(entry, { throwIfNoEntry: false })?.uid ?? -1) === owner.uid,
        )
        const temp = scanFiles(appeared, everywhere)
        leaks.push(...ours.leaks, ...store.leaks, ...temp.leaks)
        for (const expected of [
          path.join(dirs.stateDir, "stanzas.json"),
          path.join(copy.pg.pgdata, "PG_VERSION"),
          path.join(dirs.manifestsDir, ".status", "default", "stanzas", "stanza-sample.json"),
        ]) {
          assert.include(ours.files, expected)
        }
        assert.isTrue(
          ours.files.some((file) => file.startsWith(path.join(dirs.runDir, "ca"))),
          "no CA bundle scanned",
        )
        assert.isTrue(
          ours.files.some((file) => file.startsWith(dirs.spoolDir)),
          "nothing scanned in the spool",
        )
        assert.isAbove(store.files.length, 0)

        console.log(
          [
            `secrets: ${CANARIES.length} canaries (+ the access key id), ${everywhere.reduce((n, c) => n + c.forms.length, 0)} forms`,
            `log lines: ${logLines.length} (${logs.map(([name, log]) => `${name} ${log.split("\n").length - 1}`).join(", ")})`,
            `gRPC answers: ${outcomes.length}, refusals ${refusals.length}: ${refusals.map((o) => `${o.what} -> ${Status[o.code]}`).join("; ")}`,
            `processes: ${processes.length} (${pgbackrest.length} pgbackrest), ${new Set(cmdlines).size} distinct command lines, ${watch.ticks()} polls; pgbackrest commands: ${[...commands].sort().join(", ")}`,
            `files: ${ours.files.length} of the plugin, PostgreSQL and the posix repository (${(ours.bytes / 2 ** 20).toFixed(1)} MiB), ${store.files.length} of the S3 store (${(store.bytes / 2 ** 20).toFixed(1)} MiB), ${temp.files.length} new postgres-owned in ${tempRoots.join(", ")}`,
            `new temporary entries: ${appeared.map((entry) => path.basename(entry)).join(", ")}`,
            `example command lines: ${[...new Set(cmdlines)]
              .filter((line) => /:local$|:async/.test(line))
              .slice(0, 3)
              .join("\n  ")}`,
            `refusal details:\n  ${refusals.map((o) => `${o.what}: ${o.details.replaceAll("\n", " | ").slice(0, 300)}`).join("\n  ")}`,
            `run time: ${((Date.now() - started) / 1000).toFixed(0)} s`,
          ].join("\n"),
        )
        assert.deepStrictEqual(leaks, [])
      }),
    600_000,
  )
})
