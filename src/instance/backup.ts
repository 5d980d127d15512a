import { Clock, Duration, Effect, Option, Ref, Schedule } from "effect"
import { PgBackRest } from "../adapters/pgBackRest.js"
import { StanzaState } from "../adapters/stanzaState.js"
import { decodeBackupParameters } from "../domain/backupParameters.js"
import { decodeBackupDefinition } from "../domain/backupResource.js"
import { archiveStanzaRef, clusterNamespace, decodeClusterDefinition } from "../domain/cluster.js"
import { FailedPrecondition, Unavailable } from "../domain/errors.js"
import { archivedThrough, type InfoBackup } from "../domain/pgbackrestInfo.js"
import { repositories } from "../domain/stanza.js"
import { BackupCapability_RPC_Type, type BackupDefinition } from "../generated/backup.js"
import type { EffectHandlers } from "../grpc/handlers.js"
import {
  ANNOTATION_BACKUP_NAME,
  ANNOTATION_BACKUP_UID,
  ANNOTATION_CLUSTER,
  backupResultOf,
  findBackupByUid,
} from "./backupResult.js"
import { InstanceSettings } from "./settings.js"
import { standbyCheck } from "./standby.js"
import { type ResolvedStanza, StanzaResolver } from "./stanzaResolver.js"

/** A backup may take hours; the call has no deadline from the operator, so this is the only bound. */
export const BACKUP_TIMEOUT = Duration.hours(24)

/**
 * How long a finished backup waits for PostgreSQL to archive the last WAL file it needs, checked
 * every second: pgBackRest's own archive-timeout default, for the check it cannot make here.
 */
export const BACKUP_WAL_WAIT = Duration.seconds(60)

/** The outcome of the last backup attempts, for the Stanza status and metrics. */
export interface BackupOutcome {
  readonly backupName: string
  readonly at: Date
  readonly label?: string
  readonly error?: string
}

/**
 * CNPG-I Backup service of the instance sidecar: one `pgbackrest backup` per call, tagged with the
 * Backup resource's uid so that the result describes exactly the backup this call took; then `expire`
 * applies the repository's retention. One backup at a time per stanza.
 */
export class Backup extends Effect.Service<Backup>()("cnpg-pgbackrest/Backup", {
  effect: Effect.gen(function* () {
    const settings = yield* InstanceSettings
    const resolver = yield* StanzaResolver
    const pgbackrest = yield* PgBackRest
    const state = yield* StanzaState
    const isStandby = yield* standbyCheck
    const running = yield* Ref.make<ReadonlySet<string>>(new Set())
    const lastSucceeded = yield* Ref.make<BackupOutcome | undefined>(undefined)
    const lastFailed = yield* Ref.make<BackupOutcome | undefined>(undefined)

    /** Claims the stanza for one backup; a second request fails at once instead of queueing for hours. */
    const exclusive = <A, E, R>(stanza: string, effect: Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        Ref.modify(running, (current): [boolean, ReadonlySet<string>] =>
          current.has(stanza) ? [false, current] : [true, new Set([...current, stanza])],
        ).pipe(
          Effect.filterOrFail(
            (claimed) => claimed,
            () =>
              new FailedPrecondition({
                reason: `a backup of stanza ${stanza} is already running on this instance`,
              }),
          ),
        ),
        () => effect,
        () => Ref.update(running, (current) => new Set([...current].filter((name) => name !== stanza))),
      )

    // CloudNativePG's default backup target is prefer-standby. Backing up from a standby needs the
    // primary's connection details, which this sidecar does not have: say so at once and clearly,
    // instead of pgBackRest's bare "unable to find primary cluster" (exit 56).
    const refuseStandby = isStandby.pipe(
      Effect.filterOrFail(
        (standby) => !standby,
        () =>
          new FailedPrecondition({
            reason:
              "this instance is a standby: pgBackRest backs up from the primary here; " +
              "set `target: primary` in the Backup (or `spec.backup.target: primary` in the Cluster)",
          }),
      ),
    )

    const findResult = (resolved: ResolvedStanza, repository: number, uid: string) =>
      Effect.gen(function* () {
        const info = yield* pgbackrest.info(resolved.env, { timeout: Duration.minutes(5) })
        const stanza = resolved.stanza.spec.stanzaConfiguration.name
        return yield* findBackupByUid(info, stanza, repository, uid).pipe(
          Option.match({
            onNone: () =>
              Effect.fail(
                new Unavailable({
                  what: "pgbackrest info",
                  reason: `pgbackrest backup succeeded but repository ${repository} lists no backup annotated with uid ${uid}`,
                }),
              ),
            onSome: Effect.succeed,
          }),
        )
      })

    /**
     * A backup is restorable only with the WAL from its start to its stop: PostgreSQL archives that
     * through this sidecar, to every repository, once the backup has stopped. Wait until the
     * repository of the backup lists the stop file, or report the backup as not usable.
     */
    const walArchived = (resolved: ResolvedStanza, taken: InfoBackup) =>
      Effect.gen(function* () {
        const stop = taken.archive.stop
        if (stop === null) return
        const stanza = resolved.stanza.spec.stanzaConfiguration.name
        const reached = pgbackrest
          .info(resolved.env, { timeout: Duration.minutes(5) })
          .pipe(Effect.map((info) => (archivedThrough(info, stanza, taken) ?? "") >= stop))
        const done = yield* reached.pipe(
          Effect.repeat({
            until: (yes) => yes,
            schedule: Schedule.spaced("1 second").pipe(
              Schedule.intersect(Schedule.recurUpTo(BACKUP_WAL_WAIT)),
            ),
          }),
        )
        if (!done) {
          return yield* new Unavailable({
            what: `backup ${taken.label}`,
            reason:
              `its WAL up to ${stop} did not reach repository ${taken.database["repo-key"]} within ` +
              `${Duration.format(BACKUP_WAL_WAIT)}: it cannot be restored until it does; check WAL archiving ` +
              "(the Cluster's ContinuousArchiving condition)",
          })
        }
      })

    const now = Clock.currentTimeMillis.pipe(Effect.map((millis) => new Date(millis)))

    const handlers: EffectHandlers<typeof BackupDefinition> = {
      getCapabilities: () =>
        Effect.succeed({
          capabilities: [{ type: { $case: "rpc", value: { type: BackupCapability_RPC_Type.TYPE_BACKUP } } }],
        }),

      backup: Effect.fn("Backup.backup")(function* (request) {
        const cluster = yield* decodeClusterDefinition(request.clusterDefinition)
        const backup = yield* decodeBackupDefinition(request.backupDefinition)
        const stanzaRef = yield* archiveStanzaRef(cluster)
        const namespace = clusterNamespace(cluster, backup.metadata.namespace ?? settings.namespace)
        const resolved = yield* resolver.resolve(namespace, stanzaRef)
        const stanza = resolved.stanza.spec.stanzaConfiguration.name
        const parameters = yield* decodeBackupParameters(
          request.parameters,
          repositories(resolved.stanza.spec.stanzaConfiguration).length,
        )
        yield* Effect.annotateCurrentSpan({
          backup: backup.metadata.name,
          stanza,
          repository: parameters.selectedRepository,
        })
        yield* refuseStandby

        const result = yield* exclusive(
          stanza,
          Effect.gen(function* () {
            yield* state.ensure(resolved.fingerprint, pgbackrest.stanzaCreate(resolved.env))
            yield* Effect.logInfo("backup started").pipe(
              Effect.annotateLogs({
                backup: backup.metadata.name,
                stanza,
                repository: parameters.selectedRepository,
                type: parameters.backupType,
              }),
            )
            yield* pgbackrest.backup(resolved.env, {
              repository: parameters.selectedRepository,
              type: parameters.backupType,
              annotations: {
                [ANNOTATION_BACKUP_NAME]: backup.metadata.name,
                [ANNOTATION_BACKUP_UID]: backup.metadata.uid,
                [ANNOTATION_CLUSTER]: cluster.metadata.name,
              },
              timeout: BACKUP_TIMEOUT,
            })
            const taken = yield* findResult(resolved, parameters.selectedRepository, backup.metadata.uid)
            yield* walArchived(resolved, taken)
            // Retention of the repository used, as the Stanza says (history included). A failed expire
            // does not undo the backup that exists: it is logged and the result stands.
            yield* pgbackrest
              .expire(resolved.env, parameters.selectedRepository, { timeout: Duration.hours(1) })
              .pipe(
                Effect.catchAll((error) => Effect.logWarning("expire after backup failed", error.message)),
              )
            return taken
          }),
        ).pipe(
          Effect.tapError((error) =>
            Effect.flatMap(now, (at) =>
              Ref.set(lastFailed, { backupName: backup.metadata.name, at, error: error.message }),
            ),
          ),
        )
        yield* Ref.set(lastSucceeded, {
          backupName: backup.metadata.name,
          at: yield* now,
          label: result.label,
        })
        yield* Effect.logInfo("backup completed").pipe(
          Effect.annotateLogs({ backup: backup.metadata.name, label: result.label }),
        )
        return backupResultOf(result, {
          stanza,
          repository: parameters.selectedRepository,
          instanceId: Option.getOrElse(settings.podName, () => ""),
          clusterUid: cluster.metadata.uid ?? "",
        })
      }),
    }
    return { handlers, lastSucceeded: Ref.get(lastSucceeded), lastFailed: Ref.get(lastFailed) }
  }),
}) {}
