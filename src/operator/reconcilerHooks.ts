import { Data, Effect, Either, Option, Schema } from "effect"
import { Kubernetes, type ResourceRef, Resources, type WriteError } from "../adapters/kubernetes.js"
import { decodeBackupParameters } from "../domain/backupParameters.js"
import {
  type BackupResource,
  backupApiResource,
  decodeBackupResource,
  failedBackupStatus,
} from "../domain/backupResource.js"
import {
  archiveStanzaRef,
  type Cluster,
  clusterNamespace,
  decodeCluster,
  decodeClusterDefinition,
} from "../domain/cluster.js"
import { referencedStanzas, type StanzaLookup, stanzaLookupOf, usesPlugin } from "../domain/clusterStanzas.js"
import { parseJsonBytes } from "../domain/decode.js"
import {
  type FailedPrecondition,
  InvalidRequest,
  PermissionDenied,
  type PluginError,
} from "../domain/errors.js"
import { PLUGIN_NAME } from "../domain/plugin.js"
import {
  foreignRoleRef,
  type OwningCluster,
  rbacName,
  replacementOf,
  roleBindingDiffers,
  roleBindingFor,
  roleDiffers,
  roleFor,
} from "../domain/rbac.js"
import { repositories, type Stanza } from "../domain/stanza.js"
import {
  type ReconcilerHooksCapabilitiesResult,
  ReconcilerHooksCapability_Kind,
  type ReconcilerHooksDefinition,
  type ReconcilerHooksResult,
  ReconcilerHooksResult_Behavior,
} from "../generated/reconciler.js"
import type { EffectHandlers } from "../grpc/handlers.js"

/** How long CloudNativePG waits before the next reconcile while a referenced Stanza is missing or invalid. */
export const STANZA_REQUEUE_AFTER_SECONDS = 30

const { BEHAVIOR_CONTINUE, BEHAVIOR_REQUEUE, BEHAVIOR_TERMINATE } = ReconcilerHooksResult_Behavior
const CONTINUE: ReconcilerHooksResult = { behavior: BEHAVIOR_CONTINUE, requeueAfter: 0 }
const REQUEUE: ReconcilerHooksResult = {
  behavior: BEHAVIOR_REQUEUE,
  requeueAfter: STANZA_REQUEUE_AFTER_SECONDS,
}
const TERMINATE: ReconcilerHooksResult = { behavior: BEHAVIOR_TERMINATE, requeueAfter: 0 }

const capabilities: ReconcilerHooksCapabilitiesResult = {
  reconcilerCapabilities: [
    { kind: ReconcilerHooksCapability_Kind.KIND_CLUSTER },
    { kind: ReconcilerHooksCapability_Kind.KIND_BACKUP },
  ],
}

/** What the hooks need to know of any resource before deciding how to decode it. */
const Envelope = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.optional(Schema.String),
  metadata: Schema.optional(
    Schema.Struct({ name: Schema.optional(Schema.String), namespace: Schema.optional(Schema.String) }),
  ),
})

/** Reads a referenced Stanza; a missing or invalid one is a result, not a failure. */
export const lookupStanza = (kubernetes: Kubernetes, namespace: string, name: string) =>
  kubernetes.getStanza(namespace, name).pipe(
    Effect.map((raw) => stanzaLookupOf(namespace, name, raw)),
    Effect.catchTag("NotFound", (error) =>
      Effect.succeed<StanzaLookup>({ _tag: "Missing", reason: error.message }),
    ),
  )

/** A create or replace lost a race (409): worth one more try after a fresh read. */
class WriteConflict extends Data.TaggedError("WriteConflict")<{ readonly error: FailedPrecondition }> {}

interface Desired {
  readonly resource: ResourceRef
  readonly namespace: string
  readonly name: string
  readonly wanted: Parameters<typeof replacementOf>[1]
  readonly differs: (existing: unknown) => boolean
  readonly check?: (existing: unknown) => Effect.Effect<void, PluginError>
}

/**
 * CNPG-I ReconcilerHooks. Pre, for a Cluster: keeps the Role/RoleBinding `<cluster>-pgbackrest` in
 * line with the Stanzas it references, and requeues while one is missing or invalid. Pre, for a
 * plugin Backup: checks its parameters before any pod is involved. Post has nothing to do.
 */
export class Reconciler extends Effect.Service<Reconciler>()("cnpg-pgbackrest/Reconciler", {
  effect: Effect.gen(function* () {
    const kubernetes = yield* Kubernetes

    const writeOnce = (desired: Desired) =>
      Effect.gen(function* () {
        const { resource, namespace, name, wanted } = desired
        const conflict = Effect.mapError((error: WriteError) =>
          error._tag === "FailedPrecondition" ? new WriteConflict({ error }) : error,
        )
        const existing = yield* kubernetes.get(resource, namespace, name).pipe(
          Effect.asSome,
          Effect.catchTag("NotFound", () => Effect.succeedNone),
        )
        if (Option.isNone(existing)) {
          yield* kubernetes.create(resource, namespace, wanted).pipe(conflict)
          return "created"
        }
        yield* desired.check?.(existing.value) ?? Effect.void
        if (!desired.differs(existing.value)) {
          return "unchanged"
        }
        yield* kubernetes
          .replace(resource, namespace, name, replacementOf(existing.value, wanted))
          .pipe(conflict)
        return "updated"
      })

    const ensure = (desired: Desired) =>
      writeOnce(desired).pipe(
        Effect.catchTag("WriteConflict", () =>
          Effect.logInfo("write conflict; retrying once after a fresh read").pipe(
            Effect.zipRight(writeOnce(desired)),
            Effect.catchTag("WriteConflict", (conflict) => Effect.fail(conflict.error)),
          ),
        ),
        Effect.tap((outcome) =>
          outcome === "unchanged"
            ? Effect.void
            : Effect.logInfo(`${outcome} ${desired.resource.kind} ${desired.namespace}/${desired.name}`),
        ),
        Effect.catchTag("PermissionDenied", (error) =>
          Effect.fail(
            new PermissionDenied({
              action: error.action,
              reason: `${error.reason} (the plugin's service account needs get, create and update on roles and rolebindings)`,
            }),
          ),
        ),
      )

    const ensureRbac = (cluster: OwningCluster, stanzas: ReadonlyArray<Stanza>) =>
      Effect.gen(function* () {
        const namespace = clusterNamespace(cluster)
        const name = rbacName(cluster)
        const role = roleFor(cluster, stanzas)
        yield* ensure({
          resource: Resources.role,
          namespace,
          name,
          wanted: role,
          differs: (existing) => roleDiffers(existing, role),
        })
        const binding = roleBindingFor(cluster)
        yield* ensure({
          resource: Resources.roleBinding,
          namespace,
          name,
          wanted: binding,
          differs: (existing) => roleBindingDiffers(existing, binding),
          check: (existing) => {
            const other = foreignRoleRef(existing, binding)
            return other === undefined
              ? Effect.void
              : new InvalidRequest({
                  field: `RoleBinding ${namespace}/${name} roleRef`,
                  reason: `points at ${other.kind} ${other.name}, and roleRef cannot change: delete the RoleBinding so that the plugin creates it again`,
                })
          },
        })
      })

    const preCluster = (json: unknown, type: typeof Envelope.Type) =>
      Effect.gen(function* () {
        const cluster: OwningCluster = {
          ...(yield* decodeCluster(json)),
          apiVersion: type.apiVersion,
          kind: type.kind,
        }
        if (!usesPlugin(cluster)) {
          return CONTINUE
        }
        const namespace = clusterNamespace(cluster)
        const references = referencedStanzas(cluster)
        if (references.length === 0) {
          yield* Effect.logWarning(
            "the Cluster uses the plugin without naming a Stanza (parameters.stanzaRef)",
          )
          return CONTINUE
        }
        const stanzas: Array<Stanza> = []
        for (const reference of references) {
          const lookup = yield* lookupStanza(kubernetes, namespace, reference.name)
          if (lookup._tag === "Missing") {
            yield* Effect.logInfo(`requeuing: ${lookup.reason}`).pipe(
              Effect.annotateLogs({ stanza: reference.name, referencedBy: reference.fields }),
            )
            return REQUEUE
          }
          if (lookup._tag === "Invalid") {
            yield* Effect.logWarning(`requeuing: invalid Stanza: ${lookup.error.message}`)
            return REQUEUE
          }
          stanzas.push(lookup.stanza)
        }
        yield* ensureRbac(cluster, stanzas)
        return CONTINUE
      }).pipe(Effect.annotateLogs({ kind: "Cluster" }))

    /**
     * An invalid Backup is marked failed here, then TERMINATE stops CloudNativePG's reconcile. Neither
     * TERMINATE alone nor an RPC error would tell the user anything: CloudNativePG's backup controller
     * returns the hook's result as is (`internal/controller/backup_controller.go`,
     * `preReconcilePluginHooks`), so TERMINATE leaves the Backup without a phase forever and an error
     * is retried with backoff, visible in the operator's log only. Should the status patch fail (RBAC
     * on backups/status), CONTINUE lets the backup reach the instance, whose Backup RPC decodes the
     * same parameters and fails; the instance manager then marks the Backup failed with that message.
     */
    const failBackup = (backup: BackupResource, namespace: string, error: InvalidRequest) => {
      return Effect.logWarning(`invalid Backup parameters: ${error.message}`).pipe(
        Effect.zipRight(
          kubernetes.patchStatus(
            backupApiResource(backup),
            namespace,
            backup.metadata.name,
            failedBackupStatus(error),
          ),
        ),
        Effect.as(TERMINATE),
        Effect.catchAll((patchError) =>
          Effect.logWarning(
            `cannot mark the Backup failed (${patchError.message}); the instance will refuse it instead`,
          ).pipe(Effect.as(CONTINUE)),
        ),
      )
    }

    const preBackup = (json: unknown, request: { readonly clusterDefinition: Uint8Array }) =>
      Effect.gen(function* () {
        const backup = yield* decodeBackupResource(json)
        const plugin = backup.spec.pluginConfiguration
        if (backup.spec.method !== "plugin" || plugin?.name !== PLUGIN_NAME) {
          return CONTINUE
        }
        const cluster: Cluster = yield* decodeClusterDefinition(request.clusterDefinition)
        const namespace = backup.metadata.namespace ?? clusterNamespace(cluster)
        const stanzaRef = archiveStanzaRef(cluster)
        if (Either.isLeft(stanzaRef)) {
          return yield* failBackup(backup, namespace, stanzaRef.left)
        }
        const lookup = yield* lookupStanza(
          kubernetes,
          cluster.metadata.namespace ?? namespace,
          stanzaRef.right,
        )
        if (lookup._tag !== "Found") {
          const reason = lookup._tag === "Missing" ? lookup.reason : `invalid Stanza: ${lookup.error.message}`
          yield* Effect.logInfo(`requeuing: ${reason}`)
          return REQUEUE
        }
        const count = repositories(lookup.stanza.spec.stanzaConfiguration).length
        const parameters = decodeBackupParameters(
          plugin.parameters ?? {},
          count,
          "spec.pluginConfiguration.parameters",
        )
        return Either.isLeft(parameters) ? yield* failBackup(backup, namespace, parameters.left) : CONTINUE
      }).pipe(Effect.annotateLogs({ kind: "Backup" }))

    const handlers: EffectHandlers<typeof ReconcilerHooksDefinition> = {
      getCapabilities: () => Effect.succeed(capabilities),
      pre: Effect.fn("Reconciler.pre")(function* (request) {
        const json = yield* parseJsonBytes(request.resourceDefinition, "resource_definition")
        const type = Either.getOrElse(
          Schema.decodeUnknownEither(Envelope)(json),
          (): typeof Envelope.Type => ({}),
        )
        const annotate = Effect.annotateLogs({
          name: type.metadata?.name ?? "",
          namespace: type.metadata?.namespace ?? "",
        })
        if (type.kind === "Backup") {
          return yield* preBackup(json, request).pipe(annotate)
        }
        // The Cluster may arrive without apiVersion/kind; anything else is not ours to reconcile.
        return type.kind === undefined || type.kind === "Cluster"
          ? yield* preCluster(json, type).pipe(annotate)
          : CONTINUE
      }),
      post: () => Effect.succeed(CONTINUE),
    }
    return handlers
  }),
}) {}
