import { Clock, Effect, Either } from "effect"
import { archiveStanzaRef, clusterNamespace, decodeClusterDefinition } from "../domain/cluster.js"
import { BACKUP_TYPES } from "../domain/pgbackrestInfo.js"
import {
  backupCounts,
  recoveryWindow,
  repositoryKeys,
  type StanzaObservation,
} from "../domain/stanzaStatus.js"
import {
  type CollectMetric,
  type Metric,
  MetricsCapability_RPC_Type,
  type MetricsDefinition,
  MetricType_Type,
} from "../generated/metrics.js"
import type { EffectHandlers } from "../grpc/handlers.js"
import { InstanceSettings } from "./settings.js"
import { StanzaStatus } from "./stanzaStatusWriter.js"

/** The plugin's name as a Prometheus prefix, as the Barman Cloud plugin names its own. */
export const METRIC_PREFIX = "pgbackrest_dalibo_com_"

const metric = (
  name: string,
  type: MetricType_Type,
  help: string,
  variableLabels: ReadonlyArray<string> = [],
): Metric => ({
  fqName: `${METRIC_PREFIX}${name}`,
  help,
  variableLabels: [...variableLabels],
  constLabels: {},
  valueType: { type },
})

const { TYPE_GAUGE: GAUGE, TYPE_COUNTER: COUNTER } = MetricType_Type

/** What Define announces; Collect answers with samples of these, by `fqName`. */
export const METRICS = {
  firstRecoverabilityPoint: metric(
    "first_recoverability_point",
    GAUGE,
    "The earliest point in time the cluster can be recovered to (the end of its oldest backup in any " +
      "repository), as a unix timestamp",
  ),
  lastAvailableBackup: metric(
    "last_available_backup_timestamp",
    GAUGE,
    "The end of the newest backup in any repository, as a unix timestamp",
  ),
  lastFailedBackup: metric(
    "last_failed_backup_timestamp",
    GAUGE,
    "When the last backup taken on this instance failed, as a unix timestamp",
  ),
  backups: metric("backups", GAUGE, "Backups held in a repository, by type (full, diff, incr)", [
    "repository",
    "type",
  ]),
  lastArchivedWalAge: metric(
    "last_archived_wal_age_seconds",
    GAUGE,
    "Seconds since this instance last archived a WAL segment",
  ),
  archiveFailures: metric(
    "archive_failures_total",
    COUNTER,
    "WAL archive attempts of this instance that failed, since its plugin sidecar started",
  ),
} as const satisfies Record<string, Metric>

const sample = (definition: Metric, value: number, labels: ReadonlyArray<string> = []): CollectMetric => ({
  fqName: definition.fqName,
  value,
  variableLabels: [...labels],
})

/**
 * Samples for what is known: a value nobody can know yet (no backup, nothing archived since the sidecar
 * started) is left out rather than reported as 0, which would read as 1970.
 */
export const collectMetrics = (observation: StanzaObservation, nowMillis: number): Array<CollectMetric> => {
  const samples: Array<CollectMetric> = [sample(METRICS.archiveFailures, observation.archiveFailures)]
  const { info, lastArchived, lastFailed } = observation
  if (lastArchived !== undefined) {
    const age = Math.max(0, nowMillis - lastArchived.at.getTime()) / 1000
    samples.push(sample(METRICS.lastArchivedWalAge, age))
  }
  if (lastFailed !== undefined) {
    samples.push(sample(METRICS.lastFailedBackup, lastFailed.at.getTime() / 1000))
  }
  if (info._tag !== "Listed") {
    return samples
  }
  const window = recoveryWindow(info.stanza)
  if (window !== undefined) {
    samples.push(sample(METRICS.firstRecoverabilityPoint, window.first.timestamp.stop))
    samples.push(sample(METRICS.lastAvailableBackup, window.last.timestamp.stop))
  }
  for (const repository of repositoryKeys(info.stanza)) {
    const counts = backupCounts(info.stanza, repository)
    for (const type of BACKUP_TYPES) {
      samples.push(sample(METRICS.backups, counts[type], [String(repository), type]))
    }
  }
  return samples
}

/**
 * CNPG-I Metrics of the instance sidecar: the instance manager's exporter asks on every scrape. The
 * values come from the same observation as the Stanza status, `pgbackrest info` cached for a short while.
 */
export class Metrics extends Effect.Service<Metrics>()("cnpg-pgbackrest/Metrics", {
  effect: Effect.gen(function* () {
    const settings = yield* InstanceSettings
    const status = yield* StanzaStatus

    const handlers: EffectHandlers<typeof MetricsDefinition> = {
      getCapabilities: () =>
        Effect.succeed({
          capabilities: [
            { type: { $case: "rpc", value: { type: MetricsCapability_RPC_Type.TYPE_METRICS } } },
          ],
        }),

      define: () => Effect.succeed({ metrics: Object.values(METRICS) }),

      collect: Effect.fn("Metrics.collect")(function* (request) {
        const cluster = yield* decodeClusterDefinition(request.clusterDefinition)
        // A Cluster that archives to no Stanza (it only restores from one) has nothing to measure here.
        const stanzaRef = archiveStanzaRef(cluster)
        if (Either.isLeft(stanzaRef)) {
          return { metrics: [] }
        }
        const namespace = clusterNamespace(cluster, settings.namespace)
        const observation = yield* status.observe(namespace, stanzaRef.right)
        if (observation.info._tag === "Failed") {
          yield* Effect.logDebug("metrics without pgbackrest info", observation.info.message)
        }
        return { metrics: collectMetrics(observation, yield* Clock.currentTimeMillis) }
      }),
    }
    return handlers
  }),
}) {}
