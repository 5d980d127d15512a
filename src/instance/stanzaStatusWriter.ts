import {
  Cache,
  Cause,
  Clock,
  Config,
  Data,
  Duration,
  Effect,
  Either,
  Exit,
  FiberSet,
  Layer,
  Option,
  Schedule,
} from "effect"
import { Kubernetes, type ReadError } from "../adapters/kubernetes.js"
import { PgBackRest } from "../adapters/pgBackRest.js"
import {
  archiveStanzaRef,
  clusterNamespace,
  decodeCluster,
  decodeClusterDefinition,
} from "../domain/cluster.js"
import { FailedPrecondition, type PgBackRestFailed, type PgBackRestTimeout } from "../domain/errors.js"
import {
  type InfoOutcome,
  type StanzaObservation,
  stanzaStatus,
  storedConditions,
} from "../domain/stanzaStatus.js"
import type { BackupDefinition } from "../generated/backup.js"
import type { EffectHandlers } from "../grpc/handlers.js"
import { Backup } from "./backup.js"
import { InstanceSettings } from "./settings.js"
import { standbyCheck } from "./standby.js"
import { StanzaResolver } from "./stanzaResolver.js"
import { Wal } from "./wal.js"

/**
 * Prometheus scrapes every few seconds and `pgbackrest info` reads every repository: a scrape within
 * this long of the previous one reuses its answer. A status refresh always asks again.
 */
export const INFO_CACHE_TTL = Duration.seconds(30)

/** An object store that hangs must not hold a scrape or a refresh for the default 30 minutes. */
export const INFO_TIMEOUT = Duration.minutes(2)

/** A status write refused with a conflict (409) is computed and written again, soon, a few times. */
export const StatusWriteRetry = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(3)),
)

/** How often the primary's sidecar rewrites the Stanza status of its Cluster. */
export const StatusInterval = Config.duration("CNPG_PGBACKREST_STATUS_INTERVAL").pipe(
  Config.withDescription("how often the primary's sidecar refreshes the status of its Cluster's Stanza"),
  Config.withDefault(Duration.minutes(5)),
)

const isConflict = (error: { readonly _tag: string }): boolean =>
  error instanceof FailedPrecondition && error.reason.startsWith("conflict:")

/** Whether `refresh` wrote the status, or left it to the primary. */
export type RefreshResult = "written" | "standby"

/**
 * The Stanza's `status` (recovery window, backup counts, last archived WAL, last backups, conditions),
 * kept current by the primary's sidecar: every `CNPG_PGBACKREST_STATUS_INTERVAL` (`periodic`) and after
 * each backup (`afterBackup`). `observe` serves the same facts to the metrics, `info` cached briefly.
 */
export class StanzaStatus extends Effect.Service<StanzaStatus>()("cnpg-pgbackrest/StanzaStatus", {
  scoped: Effect.gen(function* () {
    const settings = yield* InstanceSettings
    const kubernetes = yield* Kubernetes
    const resolver = yield* StanzaResolver
    const pgbackrest = yield* PgBackRest
    const wal = yield* Wal
    const backup = yield* Backup
    const isStandby = yield* standbyCheck
    const interval = yield* StatusInterval
    const background = yield* FiberSet.make()

    const readInfo = ([namespace, name]: readonly [string, string]) =>
      Effect.gen(function* (): Effect.fn.Return<
        InfoOutcome,
        ReadError | PgBackRestFailed | PgBackRestTimeout
      > {
        const resolved = yield* resolver.resolve(namespace, name)
        const stanza = resolved.stanza.spec.stanzaConfiguration.name
        const listed = yield* pgbackrest.info(resolved.env, { timeout: INFO_TIMEOUT })
        const found = listed.find((entry) => entry.name === stanza)
        if (found === undefined) {
          const message = `pgbackrest info does not list stanza ${stanza}`
          return { _tag: "Failed", reason: "StanzaMissing", message }
        }
        return { _tag: "Listed", stanza: found }
      })

    // Data.tuple: keys compare by value. A failure is not kept: the next call asks again.
    const infoCache = yield* Cache.makeWith({
      capacity: 16,
      lookup: readInfo,
      timeToLive: (exit: Exit.Exit<unknown, unknown>) =>
        Exit.isSuccess(exit) ? INFO_CACHE_TTL : Duration.zero,
    })

    /** What is known of the stanza now; a failure to read it is part of the answer, not an error. */
    const observe = Effect.fn("StanzaStatus.observe")(function* (
      namespace: string,
      stanzaRef: string,
      options: { readonly fresh?: boolean } = {},
    ) {
      const key = Data.tuple(namespace, stanzaRef)
      if (options.fresh === true) {
        yield* infoCache.invalidate(key)
      }
      const info = yield* infoCache.get(key).pipe(
        Effect.tapError(() => infoCache.invalidate(key)),
        Effect.catchAll((error) =>
          Effect.succeed<InfoOutcome>({ _tag: "Failed", reason: error._tag, message: error.message }),
        ),
      )
      const failures = yield* wal.archiveFailures
      return {
        info,
        lastArchived: yield* wal.lastArchived,
        lastArchiveFailure: failures.last,
        archiveFailures: failures.count,
        lastSucceeded: yield* backup.lastSucceeded,
        lastFailed: yield* backup.lastFailed,
      } satisfies StanzaObservation
    })

    /** Computes the status afresh and writes it, on the primary only. */
    const refresh = Effect.fn("StanzaStatus.refresh")(
      function* (namespace: string, stanzaRef: string) {
        if (yield* isStandby) {
          yield* Effect.logDebug("standby: the primary writes the Stanza status")
          return "standby" satisfies RefreshResult
        }
        const observation = yield* observe(namespace, stanzaRef, { fresh: true })
        if (observation.info._tag === "Failed") {
          yield* Effect.logWarning("cannot read the stanza's backups", observation.info.message)
        }
        // Read, compute, write: a conflict starts again from a fresh read of the conditions.
        yield* Effect.gen(function* () {
          const current = storedConditions(yield* kubernetes.getStanza(namespace, stanzaRef))
          const now = new Date(yield* Clock.currentTimeMillis)
          yield* kubernetes.patchStanzaStatus(namespace, stanzaRef, stanzaStatus(observation, current, now))
        }).pipe(Effect.retry({ schedule: StatusWriteRetry, while: isConflict }))
        yield* Effect.logDebug("Stanza status written")
        return "written" satisfies RefreshResult
      },
      (effect, namespace, stanzaRef) => Effect.annotateLogs(effect, { stanza: `${namespace}/${stanzaRef}` }),
    )

    const logFailure = (cause: Cause.Cause<{ readonly message: string }>) =>
      Effect.logWarning("Stanza status refresh failed", Cause.squash(cause))

    /** The Cluster this sidecar belongs to, and its Stanza; nothing to do without either. */
    const refreshOwnCluster = Effect.gen(function* () {
      if (Option.isNone(settings.clusterName)) {
        return yield* Effect.logDebug("CLUSTER_NAME is not set: no Stanza status to refresh")
      }
      const raw = yield* kubernetes.getCluster(settings.namespace, settings.clusterName.value)
      const cluster = yield* decodeCluster(raw)
      const stanzaRef = archiveStanzaRef(cluster)
      if (Either.isLeft(stanzaRef)) {
        return yield* Effect.logDebug("the Cluster archives to no Stanza", stanzaRef.left.message)
      }
      yield* refresh(clusterNamespace(cluster, settings.namespace), stanzaRef.right)
    }).pipe(Effect.catchAllCause(logFailure))

    /** Refreshes every `interval`, first at once; failures are logged and the loop goes on. */
    const periodic: Effect.Effect<never> = refreshOwnCluster.pipe(
      Effect.repeat(Schedule.spaced(interval)),
      Effect.zipRight(Effect.never),
    )

    /** The Backup handlers, each call followed by a refresh in the background, success or failure. */
    const afterBackup = (
      handlers: EffectHandlers<typeof BackupDefinition>,
    ): EffectHandlers<typeof BackupDefinition> => ({
      ...handlers,
      backup: (request) =>
        handlers.backup(request).pipe(
          Effect.ensuring(
            Effect.gen(function* () {
              const cluster = yield* decodeClusterDefinition(request.clusterDefinition)
              const stanzaRef = yield* archiveStanzaRef(cluster)
              const namespace = clusterNamespace(cluster, settings.namespace)
              yield* FiberSet.run(
                background,
                refresh(namespace, stanzaRef).pipe(Effect.catchAllCause(logFailure)),
              )
            }).pipe(Effect.ignore),
          ),
        ),
    })

    return { observe, refresh, periodic, afterBackup }
  }),
}) {
  /** Runs `periodic` for as long as the layer lives. */
  static readonly Periodic: Layer.Layer<never, never, StanzaStatus> = Layer.scopedDiscard(
    Effect.flatMap(StanzaStatus, (status) => Effect.forkScoped(status.periodic)),
  )
}
