import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Layer } from "effect"
import { Status } from "nice-grpc"
import { vi } from "vitest"
import { Kubernetes } from "../../src/adapters/kubernetes.js"
import { PgBackRest, PgBackRestSettings } from "../../src/adapters/pgBackRest.js"
import { Secrets } from "../../src/adapters/secrets.js"
import { StanzaState, StanzaStateSettings } from "../../src/adapters/stanzaState.js"
import { classifyFailure } from "../../src/domain/pgbackrestFailure.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { grpcStatusOf } from "../../src/grpc/status.js"
import { InstanceSettings, PluginRole } from "../../src/instance/settings.js"
import { StanzaResolver } from "../../src/instance/stanzaResolver.js"
import { Wal } from "../../src/instance/wal.js"
import { instanceSettingsIn, posixStanzaObject } from "../fixtures/pgbackrest-info/fakes.js"
import { tempDir } from "../support/tempDir.js"

// Counts the calls of the real classifier: the runner must be its only caller, once per failed
// command, and the retry predicate, the stanza re-initialisation and the status table read `reason`.
vi.mock("../../src/domain/pgbackrestFailure.js", async (importOriginal) => {
  const original = await importOriginal<typeof import("../../src/domain/pgbackrestFailure.js")>()
  return { ...original, classifyFailure: vi.fn(original.classifyFailure) }
})

const SEGMENT = "000000010000000000000001"

/**
 * A pgbackrest that logs each command to `calls` and fails archive-push as told (exit code, stderr);
 * every other command succeeds.
 */
const scriptIn = async (dir: string, exitCode: number, stderr: string) => {
  const script = path.join(dir, "pgbackrest")
  const calls = path.join(dir, "calls")
  await fs.writeFile(
    script,
    `#!/bin/sh\necho "$1" >> '${calls}'\n[ "$1" = archive-push ] || exit 0\necho '${stderr}' >&2\nexit ${exitCode}\n`,
    { mode: 0o755 },
  )
  return { script, calls }
}

const walOver = (dir: string, binary: string) => {
  const settings = instanceSettingsIn(dir)
  const instance = Layer.succeed(InstanceSettings, settings)
  const pgbackrest = PgBackRest.DefaultWithoutDependencies.pipe(
    Layer.provide(
      Layer.succeed(PgBackRestSettings, {
        binary,
        path: "/usr/bin:/bin",
        home: dir,
        timeout: Duration.seconds(20),
        killGrace: Duration.seconds(1),
        maxStdoutBytes: 1024 * 1024,
      }),
    ),
    Layer.provide(NodeContext.layer),
  )
  const resolver = StanzaResolver.Default.pipe(
    Layer.provide(Secrets.Default),
    Layer.provide(Layer.mergeAll(Kubernetes.Fake([posixStanzaObject]), instance, NodeContext.layer)),
  )
  const state = StanzaState.Default.pipe(
    Layer.provide(StanzaStateSettings.layer(settings.stateFile)),
    Layer.provide(NodeContext.layer),
  )
  const layer = Wal.Default.pipe(
    Layer.provide(
      Layer.mergeAll(resolver, state, pgbackrest, instance, Layer.succeed(PluginRole, "instance")),
    ),
  )
  return { settings, layer }
}

const archiveFailing = (exitCode: number, stderr: string) =>
  Effect.gen(function* () {
    const dir = yield* tempDir()
    const { script, calls } = yield* Effect.promise(() => scriptIn(dir, exitCode, stderr))
    const { settings, layer } = walOver(dir, script)
    const source = path.join(settings.pgData, "pg_wal", SEGMENT)
    yield* Effect.promise(async () => {
      await fs.mkdir(path.dirname(source), { recursive: true })
      await fs.writeFile(source, "")
    })
    const wal = yield* Effect.orDie(Effect.provide(Wal, layer))
    vi.mocked(classifyFailure).mockClear()
    const error = yield* Effect.flip(
      wal.handlers.archive({
        clusterDefinition: Buffer.from(
          JSON.stringify({
            metadata: { name: "pg", namespace: "db" },
            spec: {
              plugins: [{ name: PLUGIN_NAME, isWALArchiver: true, parameters: { stanzaRef: "main" } }],
            },
          }),
        ),
        sourceFileName: source,
        parameters: {},
      }),
    )
    const status = grpcStatusOf(error)
    const commands = (yield* Effect.promise(() => fs.readFile(calls, "utf8"))).trim().split("\n")
    return { error, status, commands, classified: vi.mocked(classifyFailure).mock.calls.length }
  })

describe("a pgBackRest failure is classified once", () => {
  it.scopedLive(
    "a transient archive-push failure: retried, UNAVAILABLE, one classification per failed push",
    () =>
      Effect.gen(function* () {
        const { error, status, commands, classified } = yield* archiveFailing(
          104,
          "WARN: repo1: [HostConnectError] unable to connect to 'localhost:9000': [111] Connection refused",
        )
        const pushes = commands.filter((command) => command === "archive-push").length
        // The first push and the retries of ArchiveRetry.
        assert.strictEqual(pushes, 3)
        assert.deepInclude(error, { _tag: "PgBackRestFailed", reason: "transient" })
        assert.strictEqual(status.code, Status.UNAVAILABLE)
        assert.strictEqual(classified, pushes)
      }),
  )

  it.scopedLive("a stanza missing right after stanza-create: not retried, INTERNAL, classified once", () =>
    Effect.gen(function* () {
      const { error, status, commands, classified } = yield* archiveFailing(
        55,
        "ERROR: [055]: unable to load info file '/mnt/repo/archive/main/archive.info'",
      )
      assert.deepStrictEqual(commands, ["stanza-create", "archive-push"])
      assert.deepInclude(error, { _tag: "PgBackRestFailed", reason: "stanza-missing" })
      assert.strictEqual(status.code, Status.INTERNAL)
      assert.strictEqual(classified, 1)
    }),
  )
})
