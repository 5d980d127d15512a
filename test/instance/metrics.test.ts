import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Duration, Effect, Layer, Ref, TestClock } from "effect"
import { Kubernetes } from "../../src/adapters/kubernetes.js"
import { Secrets } from "../../src/adapters/secrets.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import {
  type CollectMetric,
  MetricsCapability_RPC_Type,
  MetricType_Type,
} from "../../src/generated/metrics.js"
import { METRICS, Metrics } from "../../src/instance/metrics.js"
import { InstanceSettings } from "../../src/instance/settings.js"
import { StanzaResolver } from "../../src/instance/stanzaResolver.js"
import { StanzaStatus } from "../../src/instance/stanzaStatusWriter.js"
import {
  instanceSettingsIn,
  makeStatusFakes,
  posixStanzaObject,
  statusFakeLayers,
} from "../fixtures/pgbackrest-info/fakes.js"
import { infoJson } from "../fixtures/pgbackrest-info/load.js"
import { pgbackrestFailed } from "../support/pgbackrestFailed.js"
import { tempDir } from "../support/tempDir.js"

const START = Date.parse("2024-05-02T14:10:00Z")

const cluster = (parameters: Record<string, string> = { stanzaRef: "main" }) => ({
  clusterDefinition: Buffer.from(
    JSON.stringify({
      apiVersion: "postgresql.cnpg.io/v1",
      kind: "Cluster",
      metadata: { name: "pg", namespace: "db" },
      spec: { instances: 3, plugins: [{ name: PLUGIN_NAME, isWALArchiver: true, parameters }] },
    }),
  ),
})

/** Metrics over the real StanzaStatus and resolver (on an in-memory API), fake pgBackRest, Wal and Backup. */
const setup = Effect.gen(function* () {
  yield* TestClock.setTime(START)
  const fakes = yield* makeStatusFakes
  const instance = Layer.succeed(InstanceSettings, instanceSettingsIn(yield* tempDir()))
  const base = Layer.mergeAll(Kubernetes.Fake([posixStanzaObject]), instance, NodeContext.layer)
  const resolver = StanzaResolver.Default.pipe(Layer.provide(Secrets.Default), Layer.provide(base))
  const status = StanzaStatus.Default.pipe(
    Layer.provide(Layer.mergeAll(resolver, base, statusFakeLayers(fakes))),
  )
  const layer = Metrics.Default.pipe(Layer.provide(Layer.mergeAll(status, instance)))
  return { metrics: Context.get(yield* Layer.build(layer), Metrics), ...fakes }
})

const byName = (samples: ReadonlyArray<CollectMetric>) =>
  samples.map((sample) => [sample.fqName, ...sample.variableLabels, sample.value])

describe("Metrics", () => {
  it.scoped("GetCapabilities advertises the metrics RPCs", () =>
    Effect.gen(function* () {
      const { metrics } = yield* setup
      const { capabilities } = yield* metrics.getCapabilities({})
      assert.deepStrictEqual(capabilities, [
        { type: { $case: "rpc", value: { type: MetricsCapability_RPC_Type.TYPE_METRICS } } },
      ])
    }),
  )

  it.scoped("Define lists every metric with its help, type and labels", () =>
    Effect.gen(function* () {
      const { metrics } = yield* setup
      const defined = (yield* metrics.define(cluster())).metrics
      assert.deepStrictEqual(
        defined.map((metric) => [metric.fqName, metric.valueType?.type, metric.variableLabels]),
        [
          ["pgbackrest_dalibo_com_first_recoverability_point", MetricType_Type.TYPE_GAUGE, []],
          ["pgbackrest_dalibo_com_last_available_backup_timestamp", MetricType_Type.TYPE_GAUGE, []],
          ["pgbackrest_dalibo_com_last_failed_backup_timestamp", MetricType_Type.TYPE_GAUGE, []],
          ["pgbackrest_dalibo_com_backups", MetricType_Type.TYPE_GAUGE, ["repository", "type"]],
          ["pgbackrest_dalibo_com_last_archived_wal_age_seconds", MetricType_Type.TYPE_GAUGE, []],
          ["pgbackrest_dalibo_com_archive_failures_total", MetricType_Type.TYPE_COUNTER, []],
        ],
      )
      for (const metric of defined) {
        assert.isAbove(metric.help.length, 20, metric.fqName)
        assert.deepStrictEqual(metric.constLabels, {})
      }
    }),
  )

  it.scoped("Collect: the recovery window and counts from info, ages from the clock", () =>
    Effect.gen(function* () {
      const { metrics, lastArchived, archiveFailures, lastFailed } = yield* setup
      yield* Ref.set(lastArchived, { walName: "00000001000000000000000A", at: new Date(START - 90_000) })
      yield* Ref.set(archiveFailures, { count: 3 })
      yield* Ref.set(lastFailed, { backupName: "pg-1", at: new Date("2024-05-02T13:00:05Z"), error: "boom" })
      yield* TestClock.adjust(Duration.seconds(10))
      const { metrics: samples } = yield* metrics.collect(cluster())
      assert.deepStrictEqual(byName(samples), [
        ["pgbackrest_dalibo_com_archive_failures_total", 3],
        ["pgbackrest_dalibo_com_last_archived_wal_age_seconds", 100],
        ["pgbackrest_dalibo_com_last_failed_backup_timestamp", 1714654805],
        ["pgbackrest_dalibo_com_first_recoverability_point", 1714557674],
        ["pgbackrest_dalibo_com_last_available_backup_timestamp", 1714658419],
        ["pgbackrest_dalibo_com_backups", "1", "full", 1],
        ["pgbackrest_dalibo_com_backups", "1", "diff", 1],
        ["pgbackrest_dalibo_com_backups", "1", "incr", 1],
        ["pgbackrest_dalibo_com_backups", "2", "full", 1],
        ["pgbackrest_dalibo_com_backups", "2", "diff", 0],
        ["pgbackrest_dalibo_com_backups", "2", "incr", 0],
      ])
      for (const sample of samples) {
        assert.include(
          Object.values(METRICS).map((metric) => metric.fqName),
          sample.fqName,
        )
      }
    }),
  )

  it.scoped("Collect runs pgbackrest info at most once per 30 seconds", () =>
    Effect.gen(function* () {
      const { metrics, infoCalls, info } = yield* setup
      yield* metrics.collect(cluster())
      yield* TestClock.adjust(Duration.seconds(10))
      yield* metrics.collect(cluster())
      yield* TestClock.adjust(Duration.seconds(10))
      yield* metrics.collect(cluster())
      assert.strictEqual(yield* Ref.get(infoCalls), 1)
      yield* Ref.set(info, infoJson("no-backups"))
      yield* TestClock.adjust(Duration.seconds(11))
      const { metrics: samples } = yield* metrics.collect(cluster())
      assert.strictEqual(yield* Ref.get(infoCalls), 2)
      assert.deepStrictEqual(byName(samples), [
        ["pgbackrest_dalibo_com_archive_failures_total", 0],
        ["pgbackrest_dalibo_com_backups", "1", "full", 0],
        ["pgbackrest_dalibo_com_backups", "1", "diff", 0],
        ["pgbackrest_dalibo_com_backups", "1", "incr", 0],
      ])
    }),
  )

  it.scoped(
    "Collect without info (it failed) still reports what the sidecar knows; a failure is not kept",
    () =>
      Effect.gen(function* () {
        const { metrics, info, infoCalls, archiveFailures } = yield* setup
        yield* Ref.set(info, pgbackrestFailed("info", 49, "unreachable"))
        yield* Ref.set(archiveFailures, { count: 1 })
        const { metrics: samples } = yield* metrics.collect(cluster())
        assert.deepStrictEqual(byName(samples), [["pgbackrest_dalibo_com_archive_failures_total", 1]])
        yield* Ref.set(info, infoJson("two-repositories"))
        const again = yield* metrics.collect(cluster())
        assert.strictEqual(yield* Ref.get(infoCalls), 2)
        assert.strictEqual(again.metrics.length, 9)
      }),
  )

  it.scoped("Collect for a Cluster that archives to no Stanza is empty; a broken definition is refused", () =>
    Effect.gen(function* () {
      const { metrics, infoCalls } = yield* setup
      assert.deepStrictEqual(yield* metrics.collect(cluster({})), { metrics: [] })
      const error = yield* Effect.flip(metrics.collect({ clusterDefinition: Buffer.from("{") }))
      assert.strictEqual(error._tag, "InvalidRequest")
      assert.strictEqual(yield* Ref.get(infoCalls), 0)
    }),
  )
})
