import * as path from "node:path"
import { FileSystem } from "@effect/platform"
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Clock, Duration, Effect, Option, Ref, Schedule } from "effect"
import { PgBackRest } from "../adapters/pgBackRest.js"
import { StanzaState } from "../adapters/stanzaState.js"
import {
  archiveStanzaRef,
  CHECK_EMPTY_WAL_ARCHIVE_FILE,
  clusterNamespace,
  decodeClusterDefinition,
  mustCheckEmptyArchive,
  walRestoreStanzaRef,
} from "../domain/cluster.js"
import {
  FailedPrecondition,
  InvalidRequest,
  NotFound,
  PgBackRestFailed,
  type PluginError,
  Unimplemented,
} from "../domain/errors.js"
import { nonEmptyRepositories } from "../domain/pgbackrestInfo.js"
import { archiveSource, decodeWalFileName, restoreDestination } from "../domain/walSegment.js"
import {
  type WALArchiveRequest,
  WALCapability_RPC_Type,
  type WALDefinition,
  WALRestoreRequest_Mode,
} from "../generated/wal.js"
import type { EffectHandlers } from "../grpc/handlers.js"
import { InstanceSettings, PluginRole } from "./settings.js"
import { type ResolvedStanza, StanzaResolver } from "./stanzaResolver.js"

/**
 * Retries inside one WAL.Archive call for transient failures only: short, jittered, bounded. PostgreSQL
 * retries a failed archive_command anyway; this only saves it a round for a blip.
 */
export const ArchiveRetry = Schedule.exponential("200 millis").pipe(
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(2)),
)

/**
 * How long one WAL.Restore keeps retrying a repository that cannot be read, by role. CloudNativePG
 * reads any error from a plugin as "file absent" (walrestore/cmd.go), and PostgreSQL in archive
 * recovery then ends recovery and promotes, short of its target: in the recovery Job, waiting out an
 * outage is the only safe answer. A standby or replica instance retries the archive by itself and
 * streams meanwhile, so it is answered sooner.
 */
export const WAL_RESTORE_RETRY = { restore: Duration.minutes(10), instance: Duration.seconds(30) } as const

/** Between two reads of an unreadable repository: from half a second, doubling, at most 10 s apart. */
export const walRestoreRetry = (budget: Duration.DurationInput) =>
  Schedule.exponential("500 millis").pipe(
    Schedule.jittered,
    Schedule.union(Schedule.spaced("10 seconds")),
    Schedule.intersect(Schedule.recurUpTo(budget)),
  )

const isTransient = (error: { readonly _tag: string }): boolean =>
  error instanceof PgBackRestFailed && error.reason === "transient"

/** The last segment this sidecar archived, for status and metrics. */
export interface LastArchived {
  readonly walName: string
  readonly at: Date
}

/** Failed WAL.Archive calls since the sidecar started, and the latest one, for status and metrics. */
export interface ArchiveFailures {
  readonly count: number
  readonly last?: { readonly walName: string; readonly at: Date; readonly error: string }
}

/**
 * CNPG-I WAL service of the instance sidecar. Archive: every segment goes to every repository of the
 * Cluster's Stanza through `pgbackrest archive-push`; success is returned only when pgBackRest said so,
 * and any failure is a gRPC error so PostgreSQL keeps the segment and retries.
 */
export class Wal extends Effect.Service<Wal>()("cnpg-pgbackrest/Wal", {
  effect: Effect.gen(function* () {
    const settings = yield* InstanceSettings
    const role = yield* PluginRole
    const resolver = yield* StanzaResolver
    const pgbackrest = yield* PgBackRest
    const state = yield* StanzaState
    const fs = yield* FileSystem.FileSystem
    const lastArchived = yield* Ref.make<LastArchived | undefined>(undefined)
    const restoreSchedule = walRestoreRetry(
      Option.getOrElse(settings.walRestoreRetry, () => WAL_RESTORE_RETRY[role]),
    )
    const archiveFailures = yield* Ref.make<ArchiveFailures>({ count: 0 })

    const countFailure = <A>(effect: Effect.Effect<A, PluginError>, request: WALArchiveRequest) =>
      Effect.tapError(effect, (error) =>
        Effect.flatMap(Clock.currentTimeMillis, (millis) =>
          Ref.update(archiveFailures, (failures) => ({
            count: failures.count + 1,
            last: {
              walName: path.basename(request.sourceFileName),
              at: new Date(millis),
              error: error.message,
            },
          })),
        ),
      )

    const initialise = (resolved: ResolvedStanza) =>
      state.ensure(
        resolved.fingerprint,
        pgbackrest
          .stanzaCreate(resolved.env)
          .pipe(
            Effect.tap(() =>
              Effect.logInfo("stanza initialised").pipe(Effect.annotateLogs({ stanza: resolved.name })),
            ),
          ),
      )

    /** check_empty_wal_archive: a new cluster must not archive into a stanza that already holds history. */
    const ensureEmptyArchive = (resolved: ResolvedStanza) =>
      Effect.gen(function* () {
        const info = yield* pgbackrest.info(resolved.env)
        const used = info.flatMap(nonEmptyRepositories)
        if (used.length > 0) {
          return yield* new FailedPrecondition({
            reason:
              `the WAL archive of stanza ${resolved.stanza.spec.stanzaConfiguration.name} is not empty ` +
              `(repositories ${used.join(", ")}): refusing to mix this new cluster's WAL with an existing one; ` +
              "use an empty repoPath or another stanza name",
          })
        }
      })

    /** `createdNow`: this call's own stanza-create just ran, so a missing stanza is not a lost one. */
    const push = (resolved: ResolvedStanza, file: string, createdNow: boolean) =>
      pgbackrest.archivePush(resolved.env, file).pipe(
        Effect.retry({ schedule: ArchiveRetry, while: isTransient }),
        // The repository lost its stanza (a bucket emptied, a path changed by hand) although we had
        // initialised it in an earlier call: initialise again, once, and push again.
        Effect.catchIf(
          (error) => error instanceof PgBackRestFailed && error.reason === "stanza-missing",
          (error) =>
            Effect.gen(function* () {
              if (createdNow || !(yield* state.isInitialised(resolved.fingerprint))) {
                return yield* error
              }
              yield* Effect.logWarning(
                "stanza missing from a repository; initialising it again",
                error.message,
              )
              yield* state.forget(resolved.fingerprint)
              yield* initialise(resolved)
              yield* pgbackrest.archivePush(resolved.env, file)
            }),
        ),
      )

    // PostgreSQL never puts a symbolic link where it archives from or restores to; pgBackRest follows
    // one (archive-get opens its destination without O_NOFOLLOW), so a link planted in pg_wal would
    // make it read or write outside PGDATA although the path itself checked out. readLink succeeds on
    // a link only. A missing file is refused where it must exist (the segment to archive: pgBackRest
    // would answer with an internal assertion in async mode) and fine where it is about to be written.
    // What a racing process may swap in after this check is beyond it: such a process can write
    // PGDATA itself.
    const checkNotLink = (field: string, file: string, missing: "refused" | "allowed") =>
      fs.readLink(file).pipe(
        Effect.matchEffect({
          onFailure: (error) =>
            missing === "refused" && error._tag === "SystemError" && error.reason === "NotFound"
              ? Effect.fail(
                  new InvalidRequest({
                    field,
                    reason: `${path.basename(file)} does not exist in ${path.dirname(file)}`,
                  }),
                )
              : Effect.void,
          onSuccess: () =>
            Effect.fail(
              new InvalidRequest({
                field,
                reason: `${path.basename(file)} in ${path.dirname(file)} is a symbolic link, not a file`,
              }),
            ),
        }),
      )

    const handlers: EffectHandlers<typeof WALDefinition> = {
      getCapabilities: () =>
        Effect.succeed({
          // CloudNativePG calls WAL.Restore only on a plugin that lists RESTORE_WAL (client/wal.go).
          capabilities: [
            { type: { $case: "rpc", value: { type: WALCapability_RPC_Type.TYPE_ARCHIVE_WAL } } },
            { type: { $case: "rpc", value: { type: WALCapability_RPC_Type.TYPE_RESTORE_WAL } } },
          ],
        }),

      archive: Effect.fn("WAL.archive")(function* (request) {
        const cluster = yield* decodeClusterDefinition(request.clusterDefinition)
        const stanzaRef = yield* archiveStanzaRef(cluster)
        const source = yield* archiveSource("source_file_name", request.sourceFileName, settings.pgData)
        yield* checkNotLink("source_file_name", source.path, "refused")
        const namespace = clusterNamespace(cluster, settings.namespace)
        yield* Effect.annotateCurrentSpan({ wal: source.name, stanzaRef })
        const resolved = yield* resolver.resolve(namespace, stanzaRef)
        const checkEmpty = yield* mustCheckEmptyArchive(
          request.checkEmptyWalArchive,
          cluster,
          fs
            .exists(path.join(settings.pgData, CHECK_EMPTY_WAL_ARCHIVE_FILE))
            .pipe(Effect.orElseSucceed(() => false)),
        )
        if (checkEmpty && !(yield* state.isInitialised(resolved.fingerprint))) {
          yield* ensureEmptyArchive(resolved)
        }
        const createdNow = yield* initialise(resolved)
        yield* push(resolved, source.path, createdNow)
        yield* Ref.set(lastArchived, { walName: source.name, at: new Date(yield* Clock.currentTimeMillis) })
        yield* Effect.logDebug("archived").pipe(Effect.annotateLogs({ wal: source.name, stanza: stanzaRef }))
        return {}
      }, countFailure),

      restore: Effect.fn("WAL.restore")(function* (request) {
        const cluster = yield* decodeClusterDefinition(request.clusterDefinition)
        const name = yield* decodeWalFileName("source_wal_name", request.sourceWalName)
        const destination = yield* restoreDestination(
          "destination_file_name",
          request.destinationFileName,
          settings.pgData,
        )
        yield* checkNotLink("destination_file_name", destination, "allowed")
        const stanzaRef = yield* walRestoreStanzaRef(cluster, role)
        const namespace = clusterNamespace(cluster, settings.namespace)
        yield* Effect.annotateCurrentSpan({ wal: name, stanzaRef })
        const resolved = yield* resolver.resolve(namespace, stanzaRef)
        // pg_rewind asks for exactly one file: no prefetching into the spool for it.
        const env =
          request.mode === WALRestoreRequest_Mode.MODE_REWIND
            ? { ...resolved.env, PGBACKREST_ARCHIVE_ASYNC: "n" }
            : resolved.env
        // Unavailable: a repository could not be read, or the async get timed out. The file may be there.
        const result = yield* pgbackrest.archiveGet(env, name, destination).pipe(
          Effect.tapErrorTag("Unavailable", (error) =>
            Effect.logWarning(
              "WAL file not readable now; reading it again until the retry time is spent",
            ).pipe(Effect.annotateLogs({ wal: name, reason: error.reason })),
          ),
          Effect.retry({ schedule: restoreSchedule, while: (error) => error._tag === "Unavailable" }),
        )
        if (!result.found) {
          // NOT_FOUND tells PostgreSQL the archive has no such file: it switches to streaming or ends recovery.
          return yield* new NotFound({
            what: `WAL file ${name}`,
            reason: `no repository of stanza ${resolved.stanza.spec.stanzaConfiguration.name} holds it`,
          })
        }
        return {}
      }),
      status: () => Effect.fail(new Unimplemented({ rpc: "WAL.Status" })),
      setFirstRequired: () => Effect.fail(new Unimplemented({ rpc: "WAL.SetFirstRequired" })),
    }
    return { handlers, lastArchived: Ref.get(lastArchived), archiveFailures: Ref.get(archiveFailures) }
  }),
  dependencies: [NodeContext.layer],
}) {}
