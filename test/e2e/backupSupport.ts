import * as fs from "node:fs"
import type { CommandExecutor } from "@effect/platform/CommandExecutor"
import type * as FileSystem from "@effect/platform/FileSystem"
import { assert } from "@effect/vitest"
import { Cause, Effect, Exit, Option, Schema, type Scope } from "effect"
import { Status } from "nice-grpc"
import { backupResource } from "../../src/cli/pluginClient.js"
import * as InstanceManager from "../../src/cnpg/instanceManager.js"
import { type InfoBackup, PgBackRestInfo } from "../../src/domain/pgbackrestInfo.js"
import { InfoJson } from "../../src/domain/pgbackrestOutput.js"
import { PLUGIN_NAME, PLUGIN_VERSION } from "../../src/domain/plugin.js"
import type { BackupResult } from "../../src/generated/backup.js"
import { ANNOTATION_BACKUP_UID } from "../../src/instance/backupResult.js"
import { type RigError, rigError, withLiveClock } from "../rig/exec.js"
import { runPgBackRest, type S3Endpoint } from "../rig/index.js"
import type { PluginDirs } from "../rig/plugin.js"
import type { Postgres } from "../rig/postgres.js"
import type { Sidecar } from "../rig/sidecar.js"
import {
  type PrepareContext,
  type PrepareSetup,
  pgbackrestProcesses,
  startArchivingCluster,
} from "./support.js"

/** The POD_NAME `sidecarFor` gives the sidecar: what BackupResult.instanceId must say. */
export const POD_NAME = "cluster-demo-1"

/** A PostgreSQL 15 primary archiving through a started sidecar, its S3 (1) and posix (2) repositories. */
export interface BackupRig {
  readonly s3: S3Endpoint.S3Endpoint
  readonly dirs: PluginDirs
  readonly pg: Postgres
  readonly sidecar: Sidecar
  /** pgBackRest's own view of both repositories (stanza main), independent of the plugin. */
  readonly env: Readonly<Record<string, string>>
  /** The Cluster manifest the sidecar reads, as the object the operator sends. */
  readonly cluster: Readonly<Record<string, unknown>>
  /** Calls Backup.Backup as the instance manager does, with a fresh Backup resource (fresh uid). */
  readonly backup: (
    parameters?: Readonly<Record<string, string>>,
    options?: { readonly signal?: AbortSignal },
  ) => Effect.Effect<BackupCall>
}

/** One Backup.Backup call: the uid of the Backup resource sent, and the result or the gRPC refusal. */
export type BackupCall =
  | { readonly uid: string; readonly ok: true; readonly result: BackupResult; readonly ms: number }
  | {
      readonly uid: string
      readonly ok: false
      readonly code: Status
      readonly details: string
      readonly ms: number
    }

const Manifest = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const record = (value: unknown): Record<string, unknown> => (Schema.is(Manifest)(value) ? { ...value } : {})

/** The uid the Cluster sent in every Backup.Backup call carries. */
export const CLUSTER_UID = "6f0c1c52-3d1e-4a8e-9a57-0c1d2e3f4a5b"
const BackupUid = Schema.Struct({ metadata: Schema.Struct({ uid: Schema.String }) })

export const makeBackupRig = (
  options: {
    readonly bucket?: string
    /** Merged into `stanzaConfiguration` once the directories exist (e.g. the posix repository's retention). */
    readonly stanza?: (dirs: PluginDirs) => Readonly<Record<string, unknown>>
    /** Runs before PostgreSQL and the sidecar start (see `startArchivingCluster`). */
    readonly prepare?: (setup: PrepareSetup) => Effect.Effect<void, RigError, PrepareContext>
  } = {},
): Effect.Effect<BackupRig, RigError, Scope.Scope | FileSystem.FileSystem | CommandExecutor> =>
  Effect.gen(function* () {
    const { s3, dirs, pg, sidecar, env } = yield* startArchivingCluster({
      bucket: options.bucket ?? "backup",
      ...(options.stanza === undefined ? {} : { stanza: options.stanza }),
      ...(options.prepare === undefined ? {} : { prepare: options.prepare }),
    })
    const manifest = yield* Effect.try({
      try: () => Schema.decodeUnknownSync(Manifest)(JSON.parse(fs.readFileSync(dirs.clusterFile, "utf8"))),
      catch: (error) => rigError("cluster manifest", String(error)),
    })
    // The API server gives every object a uid; the documented manifest has none.
    const cluster = { ...manifest, metadata: { ...record(manifest.metadata), uid: CLUSTER_UID } }
    let backupCount = 0

    // Through the port of CloudNativePG's `manager backup`: a new connection, LoadPlugin, the gates.
    const backup: BackupRig["backup"] = (parameters = {}, callOptions = {}) =>
      Effect.gen(function* () {
        backupCount += 1
        const resource = backupResource(cluster, { name: `backup-${backupCount}`, parameters })
        const uid = Schema.decodeUnknownSync(BackupUid)(resource).metadata.uid
        const started = Date.now()
        const call = InstanceManager.takeBackup({
          pluginDir: sidecar.pluginDir,
          pluginName: PLUGIN_NAME,
          cluster,
          backup: resource,
          parameters: { ...parameters },
        })
        const exit = yield* Effect.promise(() =>
          Effect.runPromiseExit(call, callOptions.signal === undefined ? {} : { signal: callOptions.signal }),
        )
        const ms = Date.now() - started
        if (Exit.isSuccess(exit)) {
          return { uid, ok: true, result: exit.value, ms } satisfies BackupCall
        }
        const failure = Cause.failureOption(exit.cause)
        return Option.isSome(failure)
          ? ({
              uid,
              ok: false,
              code: failure.value.code,
              details: failure.value.reason,
              ms,
            } satisfies BackupCall)
          : ({
              uid,
              ok: false,
              code: Status.CANCELLED,
              details: Cause.pretty(exit.cause),
              ms,
            } satisfies BackupCall)
      })
    return { s3, dirs, pg, sidecar, env, cluster, backup }
  })

/** The result of a call that must have succeeded. */
export const succeeded = (call: BackupCall): BackupResult => {
  if (!call.ok) {
    assert.fail(`Backup.Backup failed: ${Status[call.code]} ${call.details}`)
  }
  return call.result
}

/** The gRPC refusal of a call that must have failed. */
export const refused = (call: BackupCall): { readonly code: Status; readonly details: string } => {
  if (call.ok) {
    assert.fail(`Backup.Backup succeeded (${call.result.backupId}) where a refusal was expected`)
  }
  return { code: call.code, details: call.details }
}

/** `pgbackrest info --output=json` of stanza main, run by the test itself: the backups, oldest first. */
export const infoBackups = (
  env: Readonly<Record<string, string>>,
): Effect.Effect<ReadonlyArray<InfoBackup>, RigError, CommandExecutor> =>
  Effect.gen(function* () {
    const info = yield* runPgBackRest(["info", "--output=json"], env)
    if (info.exitCode !== 0) {
      return yield* Effect.fail(
        rigError("pgbackrest info", `exit code ${info.exitCode}`, { stderr: info.stderr }),
      )
    }
    const stanzas = yield* Schema.decode(InfoJson)(info.stdout).pipe(
      Effect.flatMap(Schema.decodeUnknown(PgBackRestInfo)),
      Effect.mapError((error) => rigError("pgbackrest info", error.message)),
    )
    return stanzas.find((stanza) => stanza.name === "main")?.backup ?? []
  })

export const inRepo = (backups: ReadonlyArray<InfoBackup>, repo: number): ReadonlyArray<InfoBackup> =>
  backups.filter((backup) => backup.database["repo-key"] === repo)

/** The one backup of `repo` carrying `uid` in its annotation (fails unless exactly one does). */
export const byUid = (backups: ReadonlyArray<InfoBackup>, repo: number, uid: string): InfoBackup => {
  const found = inRepo(backups, repo).filter((backup) => backup.annotation?.[ANNOTATION_BACKUP_UID] === uid)
  assert.lengthOf(found, 1, `backups of repo ${repo} annotated with uid ${uid}`)
  const [backup] = found
  if (backup === undefined) return assert.fail("unreachable")
  return backup
}

/** Every field of `result` against pgBackRest's own record of the backup. */
export const assertResultMatches = (
  result: BackupResult,
  backup: InfoBackup,
  expected: {
    readonly repository: number
    readonly type: "full" | "diff" | "incr"
    readonly prior?: string
    /** "" for a Cluster without uid (the CLI reads the documented manifest, which has none). */
    readonly clusterUid?: string
  },
) => {
  assert.strictEqual(backup.type, expected.type)
  assert.strictEqual(result.backupId, backup.label)
  assert.strictEqual(result.backupName, backup.label)
  assert.isAbove(result.startedAt, 0)
  assert.isAbove(result.stoppedAt, 0)
  assert.strictEqual(result.startedAt, backup.timestamp.start)
  assert.strictEqual(result.stoppedAt, backup.timestamp.stop)
  assert.isAtLeast(result.stoppedAt, result.startedAt)
  assert.match(result.beginWal, /^[0-9A-F]{24}$/)
  assert.match(result.endWal, /^[0-9A-F]{24}$/)
  assert.strictEqual(result.beginWal, backup.archive.start)
  assert.strictEqual(result.endWal, backup.archive.stop)
  assert.match(result.beginLsn, /^[0-9A-F]+\/[0-9A-F]+$/)
  assert.match(result.endLsn, /^[0-9A-F]+\/[0-9A-F]+$/)
  assert.strictEqual(result.beginLsn, backup.lsn?.start)
  assert.strictEqual(result.endLsn, backup.lsn?.stop)
  assert.isTrue(result.online)
  assert.strictEqual(result.instanceId, POD_NAME)
  assert.strictEqual(result.backupLabelFile.length, 0)
  assert.strictEqual(result.tablespaceMapFile.length, 0)
  assert.deepStrictEqual(result.metadata, {
    plugin: PLUGIN_NAME,
    pluginVersion: PLUGIN_VERSION,
    stanza: "main",
    repository: String(expected.repository),
    type: expected.type,
    ...(expected.prior === undefined ? {} : { prior: expected.prior }),
    clusterUid: expected.clusterUid ?? CLUSTER_UID,
  })
  assert.strictEqual(backup.prior ?? undefined, expected.prior)
}

/** The `pgbackrest ... backup` processes (leader and its local workers) started by this rig's sidecar. */
export const backupProcesses = (
  rig: BackupRig,
): ReadonlyArray<{ readonly pid: number; readonly args: string }> =>
  pgbackrestProcesses(`PGBACKREST_SPOOL_PATH=${rig.dirs.spoolDir}`).filter((process) =>
    /\bbackup\b/.test(process.args),
  )

/** Polls on the live clock until `condition()` holds; fails naming `what` after `timeoutMs`. */
export const waitUntil = (what: string, condition: () => boolean, timeoutMs: number, intervalMs = 20) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!condition()) {
      if (Date.now() > deadline) return yield* Effect.fail(rigError("wait", `${what} within ${timeoutMs} ms`))
      yield* Effect.sleep(intervalMs)
    }
  }).pipe(withLiveClock)

/** An LSN as PostgreSQL prints it (`0/1A000028`), as a number that orders correctly. */
export const lsn = (text: string): bigint => {
  const [high = "", low = ""] = text.split("/")
  return (BigInt(`0x${high}`) << 32n) + BigInt(`0x${low}`)
}
