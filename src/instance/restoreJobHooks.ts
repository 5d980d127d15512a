import * as path from "node:path"
import { FileSystem } from "@effect/platform"
import { Duration, Effect } from "effect"
import { PgBackRest } from "../adapters/pgBackRest.js"
import { clusterNamespace, decodeClusterDefinition, recoveryStanzaRef } from "../domain/cluster.js"
import { FailedPrecondition, Unavailable } from "../domain/errors.js"
import { chooseBackup, restoreConfig } from "../domain/restoreTarget.js"
import { RestoreJobHooksCapability_Kind, type RestoreJobHooksDefinition } from "../generated/restore_job.js"
import type { EffectHandlers } from "../grpc/handlers.js"
import { InstanceSettings } from "./settings.js"
import { StanzaResolver } from "./stanzaResolver.js"

/** Restoring a large database takes long; the operator's call has no deadline of its own. */
export const RESTORE_TIMEOUT = Duration.hours(24)

/**
 * CNPG-I RestoreJobHooks of the `restore` sidecar in the full-recovery Job: fills PGDATA from the
 * recovery source's Stanza with `pgbackrest restore`, then tells the operator how PostgreSQL fetches
 * WAL (through this plugin) and to promote at the end. Recovery targets are the operator's to write.
 */
export class RestoreJob extends Effect.Service<RestoreJob>()("cnpg-pgbackrest/RestoreJob", {
  effect: Effect.gen(function* () {
    const settings = yield* InstanceSettings
    const resolver = yield* StanzaResolver
    const pgbackrest = yield* PgBackRest
    const fs = yield* FileSystem.FileSystem

    // pgBackRest would happily restore over files with --delta; a full recovery must start from an
    // empty PGDATA, and anything already there is left exactly as it is.
    const requireEmptyPgData = Effect.gen(function* () {
      const entries = yield* fs.readDirectory(settings.pgData).pipe(Effect.orElseSucceed(() => []))
      if (entries.length > 0) {
        return yield* new FailedPrecondition({
          reason: `${settings.pgData} is not empty (${entries.slice(0, 5).join(", ")}${entries.length > 5 ? ", ..." : ""}); refusing to restore over it`,
        })
      }
    })

    // A Cluster with walStorage keeps pg_wal on its own volume, PGDATA/pg_wal being a symlink to it.
    // pgBackRest restores pg_wal as the backup had it (a directory, when the source had no walStorage):
    // move it to the WAL volume (a copy: another filesystem) and link it back.
    const moveWalToVolume = Effect.gen(function* () {
      const inData = path.join(settings.pgData, "pg_wal")
      const onVolume = path.join(settings.walVolume, "pg_wal")
      const isLink = yield* fs.readLink(inData).pipe(
        Effect.as(true),
        Effect.orElseSucceed(() => false),
      )
      if (isLink) {
        return
      }
      const existing = yield* fs.readDirectory(onVolume).pipe(Effect.orElseSucceed(() => []))
      if (existing.length > 0) {
        return yield* new FailedPrecondition({
          reason: `${onVolume} is not empty; refusing to mix WAL into it`,
        })
      }
      yield* fs.makeDirectory(onVolume, { recursive: true })
      yield* fs.copy(inData, onVolume)
      yield* fs.remove(inData, { recursive: true })
      yield* fs.symlink(onVolume, inData)
      yield* Effect.logInfo("pg_wal moved to the WAL volume").pipe(Effect.annotateLogs({ walDir: onVolume }))
    }).pipe(
      Effect.catchTag("SystemError", "BadArgument", (error) =>
        Effect.fail(new Unavailable({ what: "WAL volume", reason: error.message })),
      ),
    )

    const handlers: EffectHandlers<typeof RestoreJobHooksDefinition> = {
      getCapabilities: () =>
        Effect.succeed({ capabilities: [{ kind: RestoreJobHooksCapability_Kind.KIND_RESTORE }] }),

      restore: Effect.fn("RestoreJobHooks.restore")(function* (request) {
        const cluster = yield* decodeClusterDefinition(request.clusterDefinition)
        const stanzaRef = yield* recoveryStanzaRef(cluster)
        const namespace = clusterNamespace(cluster, settings.namespace)
        const resolved = yield* resolver.resolve(namespace, stanzaRef)
        const stanza = resolved.stanza.spec.stanzaConfiguration.name
        yield* requireEmptyPgData

        const info = yield* pgbackrest.info(resolved.env, { timeout: Duration.minutes(5) })
        const backups = info.find((entry) => entry.name === stanza)?.backup ?? []
        const chosen = yield* chooseBackup(backups, cluster.spec.bootstrap?.recovery?.recoveryTarget)
        const repository = chosen.database["repo-key"]
        yield* Effect.logInfo("restore started").pipe(
          Effect.annotateLogs({ stanza, backup: chosen.label, repository, pgData: settings.pgData }),
        )
        yield* pgbackrest.restore(
          { ...resolved.env, PGBACKREST_DELTA: "n" },
          { label: chosen.label, repository },
          { timeout: RESTORE_TIMEOUT },
        )
        if (cluster.spec.walStorage !== undefined) {
          yield* moveWalToVolume
        }
        yield* Effect.logInfo("restore completed").pipe(Effect.annotateLogs({ stanza, backup: chosen.label }))
        return { restoreConfig: restoreConfig(), envs: [] }
      }),
    }
    return handlers
  }),
}) {}
