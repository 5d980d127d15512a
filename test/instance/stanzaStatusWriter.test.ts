import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import {
  Chunk,
  Clock,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Fiber,
  Layer,
  Option,
  Ref,
  Schema,
  TestClock,
} from "effect"
import { Kubernetes } from "../../src/adapters/kubernetes.js"
import { Secrets } from "../../src/adapters/secrets.js"
import { FailedPrecondition } from "../../src/domain/errors.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { storedConditions } from "../../src/domain/stanzaStatus.js"
import { InstanceSettings } from "../../src/instance/settings.js"
import { StanzaResolver } from "../../src/instance/stanzaResolver.js"
import { StanzaStatus } from "../../src/instance/stanzaStatusWriter.js"
import {
  instanceSettingsIn,
  makeStatusFakes,
  posixStanzaObject,
  statusFakeLayers,
  unused,
} from "../fixtures/pgbackrest-info/fakes.js"
import { infoJson } from "../fixtures/pgbackrest-info/load.js"
import { fakeApiServer, kubeConfigFor } from "../support/fakeApiServer.js"
import { pgbackrestFailed } from "../support/pgbackrestFailed.js"
import { collectingLogs } from "../support/pluginObjects.js"
import { tempDir } from "../support/tempDir.js"

const STATUS_PATH = "/apis/pgbackrest.dalibo.com/v1/namespaces/db/stanzas/main/status"
const CLUSTER_PATH = "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg"
const STANZAS = { group: "pgbackrest.dalibo.com", plural: "stanzas" }
const START = Date.parse("2024-05-02T14:10:00Z")

const StatusObject = Schema.Record({ key: Schema.String, value: Schema.Unknown })
const PatchBody = Schema.Struct({ status: StatusObject })

const clusterObject = {
  apiVersion: "postgresql.cnpg.io/v1",
  kind: "Cluster",
  metadata: { name: "pg", namespace: "db" },
  spec: {
    instances: 3,
    plugins: [{ name: PLUGIN_NAME, isWALArchiver: true, parameters: { stanzaRef: "main" } }],
  },
}

/** StanzaStatus over fakes, on the real client-node Kubernetes layer pointed at a fake API server. */
const setup = (config: ReadonlyArray<readonly [string, string]> = []) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(START)
    const settings = instanceSettingsIn(yield* tempDir())
    const server = yield* fakeApiServer()
    yield* server.seed(posixStanzaObject, clusterObject)
    const fakes = yield* makeStatusFakes
    const kubernetes = Kubernetes.fromKubeConfig(kubeConfigFor(server))
    const base = Layer.mergeAll(kubernetes, Layer.succeed(InstanceSettings, settings), NodeContext.layer)
    const resolver = StanzaResolver.Default.pipe(Layer.provide(Secrets.Default), Layer.provide(base))
    const layer = StanzaStatus.Default.pipe(
      Layer.provide(Layer.mergeAll(resolver, base, statusFakeLayers(fakes))),
      Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(config)))),
    )
    const status = Context.get(yield* Layer.build(layer), StanzaStatus)
    const patches = server.requests.pipe(
      Effect.map((requests) => requests.filter((r) => r.method === "PATCH" && r.path === STATUS_PATH)),
    )
    const object = server.object(STANZAS, "db", "main").pipe(Effect.map(Option.getOrThrow))
    const stored = Effect.map(object, (o) => Schema.decodeUnknownSync(StatusObject)(o.status))
    const conditions = Effect.map(object, storedConditions)
    return { settings, server, fakes, status, patches, stored, conditions }
  })

/** Real time passes (for the HTTP round trips) until `condition` holds; 5 s at most. */
const eventually = <A, E>(effect: Effect.Effect<A, E>, condition: (value: A) => boolean) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < 500; attempt++) {
      const value = yield* effect
      if (condition(value)) {
        return value
      }
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 10)))
    }
    return yield* Effect.die("condition not reached in 5 s")
  })

/**
 * Runs `effect` to its end, moving the TestClock to each wake-up within a second (the retry waits; the
 * 10 s timeouts of requests in flight are left alone), and returns the waits it made, in milliseconds.
 */
const runMovingClock = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    const waits: Array<number> = []
    while (Option.isNone(yield* Fiber.poll(fiber))) {
      const now = yield* Clock.currentTimeMillis
      const wait = Math.min(...(yield* TestClock.sleeps())) - now
      if (wait <= 1000) {
        waits.push(wait)
        yield* TestClock.adjust(Duration.millis(wait))
      } else {
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 1)))
      }
    }
    return { exit: yield* Fiber.await(fiber), waits }
  })

describe("StanzaStatus.refresh", () => {
  it.scoped("writes the status of the Stanza as a merge patch on its status subresource", () =>
    Effect.gen(function* () {
      const { status, fakes, patches, conditions } = yield* setup()
      yield* Ref.set(fakes.lastArchived, {
        walName: "00000001000000000000000A",
        at: new Date("2024-05-02T14:05:00Z"),
      })
      assert.strictEqual(yield* status.refresh("db", "main"), "written")

      const [patch, ...more] = yield* patches
      assert.deepStrictEqual(more, [])
      assert.strictEqual(patch?.contentType, "application/merge-patch+json")
      const body = Schema.decodeUnknownSync(PatchBody, { onExcessProperty: "error" })(patch?.body)
      assert.deepStrictEqual(body.status.backups, { full: 2, diff: 1, incr: 1 })
      assert.strictEqual(body.status.firstRecoverabilityPoint, "2024-05-01T10:01:14Z")
      assert.strictEqual(body.status.lastArchivedWAL, "00000001000000000000000A")
      assert.notProperty(body.status, "lastFailedBackup")

      assert.deepStrictEqual(
        (yield* conditions).map((c) => [c.type, c.status]),
        [
          ["Ready", "True"],
          ["ContinuousArchiving", "True"],
        ],
      )
      assert.strictEqual(yield* Ref.get(fakes.infoCalls), 1)
    }),
  )

  it.scoped("asks pgbackrest again on every refresh; an emptied repository loses its window", () =>
    Effect.gen(function* () {
      const { status, fakes, stored } = yield* setup()
      yield* status.refresh("db", "main")
      yield* Ref.set(fakes.info, infoJson("no-backups"))
      yield* status.refresh("db", "main")
      assert.strictEqual(yield* Ref.get(fakes.infoCalls), 2)
      const written = yield* stored
      assert.notProperty(written, "recoveryWindow")
      assert.notProperty(written, "firstRecoverabilityPoint")
      assert.deepStrictEqual(written.backups, { full: 0, diff: 0, incr: 0 })
    }),
  )

  it.scoped("keeps lastTransitionTime while Ready stays, moves it when Ready changes", () =>
    Effect.gen(function* () {
      const { status, fakes, conditions } = yield* setup()
      const ready = Effect.map(conditions, (all) => all.find((c) => c.type === "Ready")?.lastTransitionTime)
      yield* status.refresh("db", "main")
      yield* TestClock.adjust(Duration.minutes(5))
      yield* status.refresh("db", "main")
      assert.strictEqual(yield* ready, "2024-05-02T14:10:00Z")
      yield* Ref.set(fakes.info, infoJson("mixed-repositories"))
      yield* TestClock.adjust(Duration.minutes(5))
      yield* status.refresh("db", "main")
      assert.strictEqual(yield* ready, "2024-05-02T14:20:00Z")
    }),
  )

  it.scoped("a failing pgbackrest info is written as Ready False; the window already known stays", () =>
    Effect.gen(function* () {
      const { status, fakes, stored, conditions } = yield* setup()
      yield* status.refresh("db", "main")
      yield* Ref.set(fakes.info, pgbackrestFailed("info", 49, "ERROR: [049]: unable to connect"))
      assert.strictEqual(yield* status.refresh("db", "main"), "written")
      assert.deepInclude((yield* conditions)[0], {
        type: "Ready",
        status: "False",
        reason: "PgBackRestFailed",
        message: "pgbackrest info failed with exit code 49: ERROR: [049]: unable to connect",
      })
      assert.property(yield* stored, "recoveryWindow")
    }),
  )

  it.scoped("on a standby (standby.signal in PGDATA) writes nothing and runs no pgbackrest", () =>
    Effect.gen(function* () {
      const { status, settings, fakes, patches } = yield* setup()
      yield* Effect.promise(async () => {
        await fs.mkdir(settings.pgData, { recursive: true })
        await fs.writeFile(path.join(settings.pgData, "standby.signal"), "")
      })
      assert.strictEqual(yield* status.refresh("db", "main"), "standby")
      assert.deepStrictEqual(yield* patches, [])
      assert.strictEqual(yield* Ref.get(fakes.infoCalls), 0)
    }),
  )

  it.scoped("retries a conflicting write (409) after a short wait, and succeeds", () =>
    Effect.gen(function* () {
      const { status, server, patches, stored } = yield* setup()
      yield* server.failNext({ path: STATUS_PATH, method: "PATCH", status: 409, times: 2 })
      const { exit, waits } = yield* runMovingClock(status.refresh("db", "main"))
      assert.isTrue(exit._tag === "Success")
      assert.strictEqual((yield* patches).length, 3)
      assert.strictEqual(waits.length, 2)
      assert.isTrue(
        waits.every((wait) => wait > 0 && wait < 1000),
        `waits: ${waits.join(", ")}`,
      )
      assert.property(yield* stored, "recoveryWindow")
    }),
  )

  it.scoped("gives up after four conflicting writes with the conflict", () =>
    Effect.gen(function* () {
      const { status, server, patches } = yield* setup()
      yield* server.failNext({ path: STATUS_PATH, method: "PATCH", status: 409, times: 10 })
      const { exit } = yield* runMovingClock(Effect.flip(status.refresh("db", "main")))
      assert.isTrue(exit._tag === "Success" && exit.value instanceof FailedPrecondition)
      if (exit._tag === "Success") {
        assert.include(exit.value.message, "conflict:")
      }
      assert.strictEqual((yield* patches).length, 4)
    }),
  )
})

describe("StanzaStatus.periodic", () => {
  it.scoped(
    "refreshes its own Cluster's Stanza at once, then every interval; a failure is logged, not fatal",
    () =>
      Effect.gen(function* () {
        const { status, server, fakes, patches } = yield* setup([
          ["CNPG_PGBACKREST_STATUS_INTERVAL", "30 seconds"],
        ])
        const logs: Array<string> = []
        yield* server.failNext({ path: CLUSTER_PATH, method: "GET", status: 403, times: 1 })
        yield* Layer.build(
          StanzaStatus.Periodic.pipe(
            Layer.provide(Layer.succeed(StanzaStatus, status)),
            Layer.provide(collectingLogs(logs)),
          ),
        )
        const nextRound = Effect.gen(function* () {
          yield* eventually(TestClock.sleeps(), (sleeps) => Chunk.some(sleeps, (at) => at >= START + 30_000))
          yield* TestClock.adjust(Duration.seconds(30))
        })

        yield* eventually(
          Effect.sync(() => logs),
          (lines) => lines.length > 0,
        )
        assert.include(logs[0], "Stanza status refresh failed")
        assert.deepStrictEqual(yield* patches, [])
        yield* nextRound
        yield* eventually(patches, (p) => p.length === 1)
        yield* nextRound
        yield* eventually(patches, (p) => p.length === 2)
        assert.strictEqual(yield* Ref.get(fakes.infoCalls), 2)
      }),
  )
})

describe("StanzaStatus.afterBackup", () => {
  it.scoped("a backup call, even a failed one, is followed by a refresh in the background", () =>
    Effect.gen(function* () {
      const { status, patches } = yield* setup()
      const refused = new FailedPrecondition({ reason: "a backup of stanza main is already running" })
      const handlers = status.afterBackup({ getCapabilities: unused, backup: () => Effect.fail(refused) })
      const error = yield* Effect.flip(
        handlers.backup({
          clusterDefinition: Buffer.from(JSON.stringify(clusterObject)),
          backupDefinition: Buffer.alloc(0),
          parameters: {},
        }),
      )
      assert.strictEqual(error, refused)
      yield* eventually(patches, (p) => p.length === 1)
    }),
  )
})
