import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, Duration, Effect, Exit, Fiber, Layer, Option, Ref, TestClock } from "effect"
import { Status } from "nice-grpc"
import { Kubernetes } from "../../src/adapters/kubernetes.js"
import { type ArchiveGetResult, PgBackRest } from "../../src/adapters/pgBackRest.js"
import { Secrets } from "../../src/adapters/secrets.js"
import { StanzaState, StanzaStateSettings } from "../../src/adapters/stanzaState.js"
import * as InstanceManager from "../../src/cnpg/instanceManager.js"
import { CHECK_EMPTY_WAL_ARCHIVE_FILE, SKIP_EMPTY_WAL_ARCHIVE_CHECK } from "../../src/domain/cluster.js"
import { type PgBackRestFailed, type PluginError, Unavailable } from "../../src/domain/errors.js"
import { decodeInfo } from "../../src/domain/pgbackrestInfo.js"
import { PLUGIN_NAME, socketPath } from "../../src/domain/plugin.js"
import type { PgBackRestEnv } from "../../src/domain/stanzaEnv.js"
import { IdentityDefinition, PluginCapability_Service_Type } from "../../src/generated/identity.js"
import {
  type WALArchiveRequest,
  WALCapability_RPC_Type,
  WALDefinition,
  WALRestoreRequest_Mode,
} from "../../src/generated/wal.js"
import { implement } from "../../src/grpc/handlers.js"
import { Identity, ServedCapabilities } from "../../src/grpc/identity.js"
import { serveUnixSocket } from "../../src/grpc/server.js"
import { grpcStatusOf } from "../../src/grpc/status.js"
import { InstanceSettings, type InstanceSettingsShape, PluginRole } from "../../src/instance/settings.js"
import { StanzaResolver } from "../../src/instance/stanzaResolver.js"
import { Wal } from "../../src/instance/wal.js"
import { instanceSettingsIn, unused } from "../fixtures/pgbackrest-info/fakes.js"
import { pgbackrestFailed } from "../support/pgbackrestFailed.js"
import { tempDir } from "../support/tempDir.js"

const SEGMENT = "000000010000000000000003"
const NEXT_SEGMENT = "000000010000000000000004"

// ---------------------------------------------------------------------------------------------------
// A fake pgBackRest: records every call, fails the ones it is told to, answers `info` with given JSON.

interface Call {
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly envKeys: ReadonlyArray<string>
  readonly stanza: string | undefined
}

interface Script {
  readonly calls: Ref.Ref<ReadonlyArray<Call>>
  /** Exit codes the next calls of a command fail with, in order; once used up, the command succeeds. */
  readonly failures: Ref.Ref<Readonly<Record<string, ReadonlyArray<number>>>>
  readonly info: Ref.Ref<unknown>
}

const infoOf = (archive: { readonly min: string | null; readonly max: string | null }) => [
  {
    name: "main",
    status: { code: 0, message: "ok" },
    archive: [{ database: { id: 1, "repo-key": 1 }, id: "16-1", ...archive }],
    backup: [],
  },
]

const EMPTY_INFO = infoOf({ min: null, max: null })
const USED_INFO = infoOf({ min: "000000010000000000000001", max: "000000010000000000000002" })

const makeScript: Effect.Effect<Script> = Effect.all({
  calls: Ref.make<ReadonlyArray<Call>>([]),
  failures: Ref.make<Readonly<Record<string, ReadonlyArray<number>>>>({}),
  info: Ref.make<unknown>(EMPTY_INFO),
})

const failNext = (script: Script, command: string, ...exitCodes: ReadonlyArray<number>) =>
  Ref.update(script.failures, (failures) => ({ ...failures, [command]: exitCodes }))

const commands = (script: Script) =>
  Ref.get(script.calls).pipe(Effect.map((calls) => calls.map((call) => call.command)))

const fakePgBackRest = (script: Script) => {
  const respond = (command: string, env: PgBackRestEnv, args: ReadonlyArray<string> = []) =>
    Effect.gen(function* () {
      const stanza = env.PGBACKREST_STANZA
      yield* Ref.update(script.calls, (calls) => [
        ...calls,
        {
          command,
          args,
          envKeys: Object.keys(env).sort(),
          stanza: typeof stanza === "string" ? stanza : undefined,
        },
      ])
      const [exitCode, ...rest] = (yield* Ref.get(script.failures))[command] ?? []
      if (exitCode !== undefined) {
        yield* Ref.update(script.failures, (failures) => ({ ...failures, [command]: rest }))
        return yield* pgbackrestFailed(
          command,
          exitCode,
          `ERROR: [${String(exitCode).padStart(3, "0")}]: scripted failure of ${command}`,
        )
      }
    })
  return Layer.succeed(
    PgBackRest,
    PgBackRest.make({
      run: (command, options) =>
        respond(command, options.env, options.args).pipe(Effect.as({ stdout: "", stderr: "" })),
      version: () =>
        respond("version", {}).pipe(Effect.as({ major: 2, minor: 55, patch: 1, text: "2.55.1" })),
      stanzaCreate: (env) => respond("stanza-create", env),
      archivePush: (env, walPath) => respond("archive-push", env, [walPath]),
      archiveGet: (env, walName, destination) =>
        respond("archive-get", env, [walName, destination]).pipe(
          Effect.as<ArchiveGetResult>({ found: true }),
          // As the adapter reads archive-get's failures (tested in test/adapters/pgBackRest.test.ts).
          Effect.catchTag(
            "PgBackRestFailed",
            (error): Effect.Effect<ArchiveGetResult, PgBackRestFailed | Unavailable> =>
              error.reason === "absent"
                ? Effect.succeed<ArchiveGetResult>({ found: false })
                : error.reason === "transient"
                  ? Effect.fail(new Unavailable({ what: `WAL file ${walName}`, reason: error.message }))
                  : Effect.fail(error),
          ),
        ),
      info: (env) =>
        respond("info", env, ["--output=json"]).pipe(
          Effect.zipRight(Ref.get(script.info)),
          Effect.flatMap(decodeInfo),
        ),
      check: (env) => respond("check", env),
      backup: unused,
      expire: unused,
      restore: unused,
    }),
  )
}

// ---------------------------------------------------------------------------------------------------
// The Wal service over the fake, the real StanzaState on a temp file, the real resolver on a fake API.

const stanzaObject = {
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: "main", namespace: "db" },
  spec: { stanzaConfiguration: { name: "main", posixRepositories: [{ repoPath: "/mnt/repo" }] } },
}

const settingsIn = instanceSettingsIn

const walLayer = (settings: InstanceSettingsShape, script: Script) => {
  const instance = Layer.succeed(InstanceSettings, settings)
  const resolver = StanzaResolver.Default.pipe(
    Layer.provide(Secrets.Default),
    Layer.provide(Layer.mergeAll(Kubernetes.Fake([stanzaObject]), instance, NodeContext.layer)),
  )
  const state = StanzaState.Default.pipe(
    Layer.provide(StanzaStateSettings.layer(settings.stateFile)),
    Layer.provide(NodeContext.layer),
  )
  return Wal.Default.pipe(
    Layer.provide(
      Layer.mergeAll(
        resolver,
        state,
        fakePgBackRest(script),
        instance,
        Layer.succeed(PluginRole, "instance"),
      ),
    ),
  )
}

const cluster = (
  plugins: unknown = [{ name: PLUGIN_NAME, isWALArchiver: true, parameters: { stanzaRef: "main" } }],
) => ({
  apiVersion: "postgresql.cnpg.io/v1",
  kind: "Cluster",
  metadata: { name: "pg", namespace: "db" },
  spec: { instances: 3, plugins },
})

/** A fresh sidecar: its own directories, a fake pgBackRest, and `restart` to build it again over them. */
const setup = Effect.gen(function* () {
  const settings = settingsIn(yield* tempDir())
  const script = yield* makeScript
  const start = Effect.provide(Wal, walLayer(settings, script))
  const wal = yield* start
  const walPath = (name: string) => path.join(settings.pgData, "pg_wal", name)
  // The segments PostgreSQL asks to archive exist (the fake pgBackRest does not read them).
  yield* Effect.promise(async () => {
    await fs.mkdir(walPath(""), { recursive: true })
    for (const name of [SEGMENT, NEXT_SEGMENT]) await fs.writeFile(walPath(name), "")
  })
  const request = (overrides: Partial<WALArchiveRequest> = {}): WALArchiveRequest => ({
    clusterDefinition: Buffer.from(JSON.stringify(cluster())),
    sourceFileName: walPath(SEGMENT),
    parameters: {},
    ...overrides,
  })
  return { settings, script, wal, restart: start, walPath, request }
})

/**
 * Runs `effect` to its end, moving the TestClock each time it waits (the retry schedule), and returns
 * its Exit with the waits it made, in milliseconds.
 */
const runMovingClock = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.fork(effect)
    const waits: Array<number> = []
    while (Option.isNone(yield* Fiber.poll(fiber))) {
      const sleeps = yield* TestClock.sleeps()
      if (Chunk.isNonEmpty(sleeps)) {
        // Exactly to the first wake-up, so each wait is seen on its own.
        const wait = Chunk.unsafeHead(sleeps) - (yield* Clock.currentTimeMillis)
        waits.push(wait)
        yield* TestClock.adjust(Duration.millis(wait))
      } else {
        // The fiber is busy (a state file write): let Node's I/O run.
        yield* Effect.promise(() => new Promise((resolve) => setImmediate(resolve)))
      }
    }
    return { exit: yield* Fiber.await(fiber), waits }
  })

const isPgBackRestFailed = (error: PluginError): error is PgBackRestFailed =>
  error._tag === "PgBackRestFailed"

// ---------------------------------------------------------------------------------------------------

describe("Wal.Archive", () => {
  it.scoped("creates the stanza once, then pushes the segment by its absolute path", () =>
    Effect.gen(function* () {
      const { wal, script, request, walPath } = yield* setup
      assert.deepStrictEqual(yield* wal.handlers.archive(request()), {})
      assert.deepStrictEqual(
        yield* wal.handlers.archive(request({ sourceFileName: walPath(NEXT_SEGMENT) })),
        {},
      )

      const calls = yield* Ref.get(script.calls)
      assert.deepStrictEqual(
        calls.map((call) => [call.command, ...call.args]),
        [["stanza-create"], ["archive-push", walPath(SEGMENT)], ["archive-push", walPath(NEXT_SEGMENT)]],
      )
      for (const call of calls) {
        assert.isTrue(path.isAbsolute(call.args[0] ?? "/"))
        assert.strictEqual(call.stanza, "main")
        for (const key of [
          "PGBACKREST_STANZA",
          "PGBACKREST_REPO1_TYPE",
          "PGBACKREST_REPO1_PATH",
          "PGBACKREST_PG1_PATH",
        ]) {
          assert.include(call.envKeys, key)
        }
      }
    }),
  )

  it.scoped("a restarted sidecar reads the state file and does not create the stanza again", () =>
    Effect.gen(function* () {
      const { wal, script, request, restart, settings, walPath } = yield* setup
      yield* wal.handlers.archive(request())
      const written = JSON.parse(yield* Effect.promise(() => fs.readFile(settings.stateFile, "utf8")))
      assert.strictEqual(Object.keys(written.stanzas).length, 1)

      const restarted = yield* restart
      yield* restarted.handlers.archive(request({ sourceFileName: walPath(NEXT_SEGMENT) }))
      assert.deepStrictEqual(yield* commands(script), ["stanza-create", "archive-push", "archive-push"])
    }),
  )

  it.scoped("retries archive-push after a transient failure (exit 49) and succeeds", () =>
    Effect.gen(function* () {
      const { wal, script, request } = yield* setup
      yield* failNext(script, "archive-push", 49)
      const { exit, waits } = yield* runMovingClock(wal.handlers.archive(request()))
      assert.isTrue(exit._tag === "Success")
      assert.deepStrictEqual(yield* commands(script), ["stanza-create", "archive-push", "archive-push"])
      // One wait: 200 ms, jittered.
      assert.strictEqual(waits.length, 1)
      assert.isTrue((waits[0] ?? 0) >= 160 && (waits[0] ?? 0) <= 240, `waited ${waits[0]} ms`)
      assert.strictEqual((yield* wal.lastArchived)?.walName, SEGMENT)
    }),
  )

  it.scoped("gives up after three attempts when the failure stays transient", () =>
    Effect.gen(function* () {
      const { wal, script, request } = yield* setup
      yield* failNext(script, "archive-push", 101, 101, 101, 101)
      const { exit, waits } = yield* runMovingClock(wal.handlers.archive(request()))
      assert.isTrue(exit._tag === "Failure")
      if (exit._tag === "Failure") {
        assert.include(String(exit.cause), "exit code 101")
      }
      assert.deepStrictEqual(yield* commands(script), [
        "stanza-create",
        "archive-push",
        "archive-push",
        "archive-push",
      ])
      assert.strictEqual(waits.length, 2)
      assert.isTrue((waits[1] ?? 0) > (waits[0] ?? 0), `waits grow: ${waits.join(", ")}`)
      assert.isUndefined(yield* wal.lastArchived)
    }),
  )

  it.scoped("fails at once on a permanent failure (exit 44), with its exit code and message", () =>
    Effect.gen(function* () {
      const { wal, script, request } = yield* setup
      yield* failNext(script, "archive-push", 44)
      const { exit, waits } = yield* runMovingClock(Effect.flip(wal.handlers.archive(request())))
      assert.deepStrictEqual(waits, [], "no retry")
      assert.deepStrictEqual(yield* commands(script), ["stanza-create", "archive-push"])
      assert.isTrue(exit._tag === "Success")
      if (exit._tag === "Success") {
        const error = exit.value
        assert.isTrue(isPgBackRestFailed(error))
        if (isPgBackRestFailed(error)) {
          assert.strictEqual(error.exitCode, 44)
          assert.strictEqual(error.command, "archive-push")
          assert.include(error.message, "exit code 44")
          assert.include(error.message, "scripted failure of archive-push")
        }
        const status = grpcStatusOf(error)
        assert.notStrictEqual(status.code, Status.OK)
        assert.strictEqual(status.code, Status.INTERNAL)
        assert.strictEqual(status.message, error.message)
      }
      assert.isUndefined(yield* wal.lastArchived)
    }),
  )

  it.scoped(
    "a stanza lost after initialisation (exit 103) is created again, once, and the push repeated",
    () =>
      Effect.gen(function* () {
        const { wal, script, request, walPath, settings } = yield* setup
        yield* wal.handlers.archive(request())
        yield* failNext(script, "archive-push", 103)
        yield* Ref.set(script.calls, [])
        yield* wal.handlers.archive(request({ sourceFileName: walPath(NEXT_SEGMENT) }))
        const calls = yield* Ref.get(script.calls)
        assert.deepStrictEqual(
          calls.map((call) => [call.command, ...call.args]),
          [
            ["archive-push", walPath(NEXT_SEGMENT)],
            ["stanza-create"],
            ["archive-push", walPath(NEXT_SEGMENT)],
          ],
        )
        assert.strictEqual((yield* wal.lastArchived)?.walName, NEXT_SEGMENT)
        // Recorded again, so the next segment does not create it once more.
        const written = JSON.parse(yield* Effect.promise(() => fs.readFile(settings.stateFile, "utf8")))
        assert.strictEqual(Object.keys(written.stanzas).length, 1)
        yield* wal.handlers.archive(request())
        assert.deepStrictEqual(yield* commands(script), [
          "archive-push",
          "stanza-create",
          "archive-push",
          "archive-push",
        ])
      }),
  )

  it.scoped("re-initialises only once: a stanza still missing after it fails the call", () =>
    Effect.gen(function* () {
      const { wal, script, request } = yield* setup
      yield* wal.handlers.archive(request())
      yield* failNext(script, "archive-push", 55, 55)
      yield* Ref.set(script.calls, [])
      const error = yield* Effect.flip(wal.handlers.archive(request()))
      assert.isTrue(isPgBackRestFailed(error) && error.exitCode === 55)
      assert.deepStrictEqual(yield* commands(script), ["archive-push", "stanza-create", "archive-push"])
    }),
  )

  it.scoped("a stanza missing right after its first stanza-create (exit 103) just fails", () =>
    Effect.gen(function* () {
      const { wal, script, request } = yield* setup
      yield* failNext(script, "archive-push", 103)
      const error = yield* Effect.flip(wal.handlers.archive(request()))
      assert.isTrue(isPgBackRestFailed(error) && error.exitCode === 103)
      // Creating the stanza it has just created would not help: no second stanza-create.
      assert.deepStrictEqual(yield* commands(script), ["stanza-create", "archive-push"])
      assert.isUndefined(yield* wal.lastArchived)
    }),
  )

  it.scoped("a failed stanza-create (exit 103) fails the call, pushes nothing and records nothing", () =>
    Effect.gen(function* () {
      const { wal, script, request, restart } = yield* setup
      yield* failNext(script, "stanza-create", 103)
      const error = yield* Effect.flip(wal.handlers.archive(request()))
      assert.isTrue(isPgBackRestFailed(error) && error.exitCode === 103 && error.command === "stanza-create")
      assert.deepStrictEqual(yield* commands(script), ["stanza-create"])
      // The next call (even after a restart) tries stanza-create again.
      yield* (yield* restart).handlers.archive(request())
      assert.deepStrictEqual(yield* commands(script), ["stanza-create", "stanza-create", "archive-push"])
    }),
  )

  it.scoped(
    "check_empty_wal_archive refuses a stanza whose archive holds WAL: FailedPrecondition, no push",
    () =>
      Effect.gen(function* () {
        const { wal, script, request } = yield* setup
        yield* Ref.set(script.info, USED_INFO)
        const error = yield* Effect.flip(wal.handlers.archive(request({ checkEmptyWalArchive: true })))
        assert.strictEqual(error._tag, "FailedPrecondition")
        assert.include(error.message, "not empty")
        assert.include(error.message, "repositories 1")
        assert.strictEqual(grpcStatusOf(error).code, Status.FAILED_PRECONDITION)
        assert.deepStrictEqual(yield* commands(script), ["info"])
        assert.isUndefined(yield* wal.lastArchived)
      }),
  )

  it.scoped("check_empty_wal_archive with an empty archive proceeds", () =>
    Effect.gen(function* () {
      const { wal, script, request } = yield* setup
      yield* wal.handlers.archive(request({ checkEmptyWalArchive: true }))
      assert.deepStrictEqual(yield* commands(script), ["info", "stanza-create", "archive-push"])
      // Once the stanza is ours, its archive is no longer expected to be empty.
      yield* Ref.set(script.info, USED_INFO)
      yield* wal.handlers.archive(request({ checkEmptyWalArchive: true }))
      assert.deepStrictEqual(yield* commands(script), [
        "info",
        "stanza-create",
        "archive-push",
        "archive-push",
      ])
    }),
  )

  it.scoped(
    "released CloudNativePG (no check_empty_wal_archive): the PGDATA marker file asks for the check",
    () =>
      Effect.gen(function* () {
        const { wal, script, request } = yield* setup
        yield* Ref.set(script.info, USED_INFO)
        // No marker: no check, as after the first successful archive (the instance manager removes it).
        yield* wal.handlers.archive(request())
        assert.deepStrictEqual(yield* commands(script), ["stanza-create", "archive-push"])

        const fresh = yield* setup
        yield* Ref.set(fresh.script.info, USED_INFO)
        yield* Effect.promise(() =>
          fs.writeFile(path.join(fresh.settings.pgData, CHECK_EMPTY_WAL_ARCHIVE_FILE), ""),
        )
        const error = yield* Effect.flip(fresh.wal.handlers.archive(fresh.request()))
        assert.strictEqual(error._tag, "FailedPrecondition")
        assert.include(error.message, "stanza main")
        assert.include(error.message, "repositories 1")
        assert.deepStrictEqual(yield* commands(fresh.script), ["info"])
        // An explicit false from a newer operator wins over the marker.
        yield* fresh.wal.handlers.archive(fresh.request({ checkEmptyWalArchive: false }))
        assert.deepStrictEqual(yield* commands(fresh.script), ["info", "stanza-create", "archive-push"])
      }),
  )

  it.scoped("the Cluster annotation cnpg.io/skipEmptyWalArchiveCheck: enabled skips the marker's check", () =>
    Effect.gen(function* () {
      const { wal, script, request, settings } = yield* setup
      yield* Ref.set(script.info, USED_INFO)
      yield* Effect.promise(() => fs.writeFile(path.join(settings.pgData, CHECK_EMPTY_WAL_ARCHIVE_FILE), ""))
      const skipping = {
        ...cluster(),
        metadata: { name: "pg", namespace: "db", annotations: { [SKIP_EMPTY_WAL_ARCHIVE_CHECK]: "enabled" } },
      }
      yield* wal.handlers.archive(request({ clusterDefinition: Buffer.from(JSON.stringify(skipping)) }))
      assert.deepStrictEqual(yield* commands(script), ["stanza-create", "archive-push"])
    }),
  )

  it.scoped("unexpected `info` output is Unavailable, not a crash", () =>
    Effect.gen(function* () {
      const { wal, script, request } = yield* setup
      yield* Ref.set(script.info, { not: "an array" })
      const error = yield* Effect.flip(wal.handlers.archive(request({ checkEmptyWalArchive: true })))
      assert.strictEqual(error._tag, "Unavailable")
      assert.deepStrictEqual(yield* commands(script), ["info"])
    }),
  )

  describe("refuses invalid requests before running pgBackRest", () => {
    const cases: ReadonlyArray<{
      readonly name: string
      readonly request: (walPath: (name: string) => string, pgData: string) => Partial<WALArchiveRequest>
      readonly field: string
      readonly reason?: string
    }> = [
      {
        name: "a segment outside PGDATA/pg_wal",
        request: () => ({ sourceFileName: `/var/lib/elsewhere/pg_wal/${SEGMENT}` }),
        field: "source_file_name",
        reason: "is not in",
      },
      {
        name: "a file elsewhere in PGDATA",
        request: (_, pgData) => ({ sourceFileName: path.join(pgData, "global", SEGMENT) }),
        field: "source_file_name",
        reason: "is not in",
      },
      {
        name: "a relative path",
        request: () => ({ sourceFileName: `pg_wal/${SEGMENT}` }),
        field: "source_file_name",
        reason: "absolute",
      },
      {
        name: "a traversal",
        request: (_, pgData) => ({ sourceFileName: `${pgData}/pg_wal/../global/pg_control` }),
        field: "source_file_name",
        reason: "normalised",
      },
      {
        name: "a traversal back into pg_wal",
        request: (_, pgData) => ({ sourceFileName: `${pgData}/pg_wal/../pg_wal/${SEGMENT}` }),
        field: "source_file_name",
        reason: "normalised",
      },
      {
        name: "a file in pg_wal that is not WAL",
        request: (walPath) => ({ sourceFileName: walPath("archive_status") }),
        field: "source_file_name",
        reason: "not a WAL file name",
      },
      {
        name: "a segment that does not exist (async pgBackRest would answer with an assertion)",
        request: (walPath) => ({ sourceFileName: walPath("0000000100000000000000FE") }),
        field: "source_file_name",
        reason: "0000000100000000000000FE does not exist in",
      },
      {
        name: "a cluster_definition that is not JSON",
        request: () => ({ clusterDefinition: Buffer.from("{ not json") }),
        field: "cluster_definition",
        reason: "not valid JSON",
      },
      {
        name: "a Cluster without a name",
        request: () => ({ clusterDefinition: Buffer.from(JSON.stringify({ metadata: {} })) }),
        field: "cluster.metadata.name",
      },
      {
        name: "a Cluster without stanzaRef",
        request: () => ({
          clusterDefinition: Buffer.from(JSON.stringify(cluster([{ name: PLUGIN_NAME, parameters: {} }]))),
        }),
        field: "spec.plugins[0].parameters.stanzaRef",
      },
      {
        name: "a Cluster that does not enable the plugin",
        request: () => ({
          clusterDefinition: Buffer.from(
            JSON.stringify(
              cluster([{ name: PLUGIN_NAME, enabled: false, parameters: { stanzaRef: "main" } }]),
            ),
          ),
        }),
        field: "spec.plugins",
      },
    ]
    for (const testCase of cases) {
      it.scoped(`${testCase.name}: InvalidRequest on ${testCase.field}`, () =>
        Effect.gen(function* () {
          const { wal, script, request, walPath, settings } = yield* setup
          const error = yield* Effect.flip(
            wal.handlers.archive(request(testCase.request(walPath, settings.pgData))),
          )
          assert.strictEqual(error._tag, "InvalidRequest")
          if (error._tag === "InvalidRequest") {
            assert.strictEqual(error.field, testCase.field)
            if (testCase.reason !== undefined) {
              assert.include(error.reason, testCase.reason)
            }
          }
          assert.strictEqual(grpcStatusOf(error).code, Status.INVALID_ARGUMENT)
          assert.deepStrictEqual(yield* Ref.get(script.calls), [], "pgBackRest must not run")
          assert.isUndefined(yield* wal.lastArchived)
        }),
      )
    }

    it.scoped("a stanzaRef naming no Stanza: NotFound", () =>
      Effect.gen(function* () {
        const { wal, script, request } = yield* setup
        const definition = cluster([{ name: PLUGIN_NAME, parameters: { stanzaRef: "nope" } }])
        const error = yield* Effect.flip(
          wal.handlers.archive(request({ clusterDefinition: Buffer.from(JSON.stringify(definition)) })),
        )
        assert.strictEqual(error._tag, "NotFound")
        assert.include(error.message, "Stanza db/nope")
        assert.deepStrictEqual(yield* Ref.get(script.calls), [])
      }),
    )
  })

  it.scoped("updates lastArchived on success only", () =>
    Effect.gen(function* () {
      const { wal, script, request, walPath } = yield* setup
      assert.isUndefined(yield* wal.lastArchived)
      yield* TestClock.setTime(Date.UTC(2026, 0, 2, 3, 4, 5))
      yield* wal.handlers.archive(request())
      assert.deepStrictEqual(yield* wal.lastArchived, {
        walName: SEGMENT,
        at: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)),
      })
      yield* failNext(script, "archive-push", 44)
      yield* TestClock.adjust("1 minute")
      yield* Effect.flip(wal.handlers.archive(request({ sourceFileName: walPath(NEXT_SEGMENT) })))
      yield* Effect.flip(wal.handlers.archive(request({ sourceFileName: "relative" })))
      assert.strictEqual((yield* wal.lastArchived)?.walName, SEGMENT)
    }),
  )

  it.scoped(
    "advertises archive and restore (CloudNativePG calls neither otherwise); others are Unimplemented",
    () =>
      Effect.gen(function* () {
        const { wal } = yield* setup
        assert.deepStrictEqual(yield* wal.handlers.getCapabilities({}), {
          capabilities: [
            { type: { $case: "rpc", value: { type: WALCapability_RPC_Type.TYPE_ARCHIVE_WAL } } },
            { type: { $case: "rpc", value: { type: WALCapability_RPC_Type.TYPE_RESTORE_WAL } } },
          ],
        })
        const error = yield* Effect.flip(wal.handlers.status({ clusterDefinition: Buffer.from("{}") }))
        assert.strictEqual(grpcStatusOf(error).code, Status.UNIMPLEMENTED)
      }),
  )
})

describe("Wal.Restore", () => {
  const restoreRequest = (settings: InstanceSettingsShape) => ({
    clusterDefinition: Buffer.from(JSON.stringify(cluster())),
    sourceWalName: SEGMENT,
    destinationFileName: path.join(settings.pgData, "pg_wal", "RECOVERYXLOG"),
    parameters: {},
    mode: WALRestoreRequest_Mode.MODE_UNSPECIFIED,
  })

  it.scoped("a repository that cannot be read is read again, with growing waits, until it answers", () =>
    Effect.gen(function* () {
      const { wal, script, settings } = yield* setup
      yield* failNext(script, "archive-get", 49, 101, 49)
      const { exit, waits } = yield* runMovingClock(wal.handlers.restore(restoreRequest(settings)))
      assert.deepStrictEqual(exit, Exit.succeed({}))
      assert.deepStrictEqual(yield* commands(script), [
        "archive-get",
        "archive-get",
        "archive-get",
        "archive-get",
      ])
      assert.strictEqual(waits.length, 3)
      assert.isTrue((waits[2] ?? 0) > (waits[0] ?? 0), `waits grow: ${waits.join(", ")}`)
    }),
  )

  it.scoped("an outage longer than the instance's 30 s is UNAVAILABLE, never NOT_FOUND", () =>
    Effect.gen(function* () {
      const { wal, script, settings } = yield* setup
      yield* failNext(script, "archive-get", ...Array.from({ length: 100 }, () => 49))
      const { exit, waits } = yield* runMovingClock(wal.handlers.restore(restoreRequest(settings)))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit) && exit.cause._tag === "Fail") {
        assert.strictEqual(grpcStatusOf(exit.cause.error).code, Status.UNAVAILABLE)
      }
      const waited = waits.reduce((sum, wait) => sum + wait, 0)
      assert.isAtLeast(waited, 30_000 - 10_000)
      assert.isAtMost(waited, 30_000 + 10_000)
      assert.isAbove(waits.length, 4)
      assert.isTrue(
        waits.every((wait) => wait < 10_001),
        `no wait above 10 s: ${waits.join(", ")}`,
      )
    }),
  )

  it.scoped("a file that no repository holds is NOT_FOUND at once", () =>
    Effect.gen(function* () {
      const { wal, script, settings } = yield* setup
      yield* failNext(script, "archive-get", 1)
      const { exit, waits } = yield* runMovingClock(wal.handlers.restore(restoreRequest(settings)))
      assert.isTrue(
        Exit.isFailure(exit) && exit.cause._tag === "Fail" && exit.cause.error._tag === "NotFound",
      )
      assert.deepStrictEqual(waits, [])
      assert.deepStrictEqual(yield* commands(script), ["archive-get"])
    }),
  )
})

describe("Wal over the plugin socket", () => {
  it.scoped("a client gets OK, INVALID_ARGUMENT, FAILED_PRECONDITION and INTERNAL as the case may be", () =>
    Effect.gen(function* () {
      const { wal, script, request, settings } = yield* setup
      const pluginDir = path.join(settings.runDir, "plugins")
      const runtime = yield* Effect.runtime<never>()
      const identity = yield* Effect.provide(
        Identity,
        Identity.Default.pipe(
          Layer.provide(Layer.succeed(ServedCapabilities, [PluginCapability_Service_Type.TYPE_WAL_SERVICE])),
        ),
      )
      yield* serveUnixSocket(socketPath(pluginDir), [
        implement(IdentityDefinition, identity, runtime),
        implement(WALDefinition, wal.handlers, runtime),
      ]).pipe(Effect.provide(NodeContext.layer))
      // As `manager wal-archive` calls it: a new connection, LoadPlugin, the ARCHIVE_WAL gate, Probe.
      const codeOf = (call: WALArchiveRequest) =>
        InstanceManager.archiveWal({
          pluginDir,
          cluster: cluster(),
          walPath: call.sourceFileName,
          ...(call.checkEmptyWalArchive === undefined
            ? {}
            : { checkEmptyWalArchive: call.checkEmptyWalArchive }),
        }).pipe(
          Effect.as({ code: Status.OK, details: "" }),
          Effect.catchTag("CallFailed", (error) =>
            Effect.succeed({ code: error.code, details: error.reason }),
          ),
        )

      const invalid = yield* codeOf(
        request({ sourceFileName: `${settings.pgData}/pg_wal/../global/pg_control` }),
      )
      assert.strictEqual(invalid.code, Status.INVALID_ARGUMENT)
      assert.include(invalid.details, "source_file_name")

      yield* Ref.set(script.info, USED_INFO)
      const used = yield* codeOf(request({ checkEmptyWalArchive: true }))
      assert.strictEqual(used.code, Status.FAILED_PRECONDITION)
      assert.include(used.details, "not empty")

      yield* Ref.set(script.info, EMPTY_INFO)
      yield* failNext(script, "archive-push", 44)
      const failed = yield* codeOf(request({ checkEmptyWalArchive: true }))
      assert.strictEqual(failed.code, Status.INTERNAL)
      assert.include(failed.details, "exit code 44")

      const ok = yield* codeOf(request())
      assert.strictEqual(ok.code, Status.OK)
      assert.strictEqual((yield* wal.lastArchived)?.walName, SEGMENT)
      assert.deepStrictEqual(yield* commands(script), [
        "info",
        "info",
        "stanza-create",
        "archive-push",
        "archive-push",
      ])
    }),
  )
})
