import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Layer, Scope } from "effect"
import { ClientError, createClient, Status } from "nice-grpc"
import { socketChannel } from "../../src/cli/pluginClient.js"
import { NotFound } from "../../src/domain/errors.js"
import { PLUGIN_NAME, PLUGIN_VERSION, socketPath } from "../../src/domain/plugin.js"
import { HealthCheckResponse_ServingStatus, HealthDefinition } from "../../src/generated/health.js"
import { IdentityDefinition, PluginCapability_Service_Type } from "../../src/generated/identity.js"
import { implement } from "../../src/grpc/handlers.js"
import { serveUnixSocket } from "../../src/grpc/server.js"
import { SocketServerLive } from "../../src/instance/layer.js"
import { tempDir } from "../support/tempDir.js"

const exists = (file: string) =>
  Effect.promise(() =>
    fs.stat(file).then(
      () => true,
      () => false,
    ),
  )

const grpcCode = (error: unknown): Status => (error instanceof ClientError ? error.code : Status.UNKNOWN)

/** Starts a socket role server in its own scope; closing the scope stops it. */
const startServer = (socket: string, capabilities: ReadonlyArray<PluginCapability_Service_Type>) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    yield* Layer.buildWithScope(
      SocketServerLive({ socketPath: socket }, capabilities, Effect.succeed([])),
      scope,
    )
    return scope
  })

describe("the plugin socket", () => {
  it.scoped("serves Identity and health on <plugin-path>/pgbackrest.dalibo.com", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const socket = socketPath(dir)
      assert.strictEqual(path.basename(socket), "pgbackrest.dalibo.com")
      yield* startServer(socket, [PluginCapability_Service_Type.TYPE_WAL_SERVICE])
      const channel = yield* socketChannel(socket)
      const identity = createClient(IdentityDefinition, channel)

      const metadata = yield* Effect.promise(() => identity.getPluginMetadata({}))
      assert.strictEqual(metadata.name, PLUGIN_NAME)
      assert.strictEqual(metadata.version, PLUGIN_VERSION)
      assert.match(metadata.version, /^\d+\.\d+\.\d+/)
      for (const field of [
        "displayName",
        "description",
        "projectUrl",
        "repositoryUrl",
        "license",
        "licenseUrl",
        "maturity",
        "vendor",
      ] as const) {
        assert.notStrictEqual(metadata[field], "", `${field} must be set`)
      }

      const capabilities = yield* Effect.promise(() => identity.getPluginCapabilities({}))
      assert.deepStrictEqual(capabilities.capabilities, [
        { type: { $case: "service", value: { type: PluginCapability_Service_Type.TYPE_WAL_SERVICE } } },
      ])
      assert.deepStrictEqual(yield* Effect.promise(() => identity.probe({})), { ready: true })

      const health = createClient(HealthDefinition, channel)
      const overall = yield* Effect.promise(() => health.check({ service: "" }))
      assert.strictEqual(overall.status, HealthCheckResponse_ServingStatus.SERVING)
      const ofIdentity = yield* Effect.promise(() => health.check({ service: "cnpgi.identity.v1.Identity" }))
      assert.strictEqual(ofIdentity.status, HealthCheckResponse_ServingStatus.SERVING)
      const unknown = yield* Effect.promise(() =>
        health.check({ service: "cnpgi.wal.v1.Nope" }).then(() => Status.OK, grpcCode),
      )
      assert.strictEqual(unknown, Status.NOT_FOUND)
    }),
  )

  it.scoped("advertises no capability it was not given", () =>
    Effect.gen(function* () {
      const socket = socketPath(yield* tempDir())
      yield* startServer(socket, [])
      const identity = createClient(IdentityDefinition, yield* socketChannel(socket))
      assert.deepStrictEqual(yield* Effect.promise(() => identity.getPluginCapabilities({})), {
        capabilities: [],
      })
    }),
  )

  it.scoped("removes its socket when it stops", () =>
    Effect.gen(function* () {
      const socket = socketPath(yield* tempDir())
      const scope = yield* startServer(socket, [])
      assert.isTrue(yield* exists(socket))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* exists(socket))
    }),
  )

  it.scoped("replaces a stale socket left by a killed process", () =>
    Effect.gen(function* () {
      const socket = socketPath(yield* tempDir())
      // A process that binds the socket and dies by SIGKILL leaves the file behind, as a crashed sidecar would.
      yield* Effect.async<void>((resume) => {
        const child = spawn(process.execPath, [
          "-e",
          `require("node:net").createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, "SIGKILL"))`,
        ])
        child.once("exit", () => resume(Effect.void))
      })
      assert.isTrue(yield* exists(socket))
      yield* startServer(socket, [])
      const identity = createClient(IdentityDefinition, yield* socketChannel(socket))
      assert.strictEqual((yield* Effect.promise(() => identity.getPluginMetadata({}))).name, PLUGIN_NAME)
    }),
  )

  it.scoped("refuses to start while another live process serves the socket", () =>
    Effect.gen(function* () {
      const socket = socketPath(yield* tempDir())
      const other = net.createServer()
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => {
          other.listen(socket, () => resume(Effect.void))
        }),
        () => Effect.sync(() => other.close()),
      )
      const exit = yield* Effect.exit(startServer(socket, []))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.include(String(exit.cause), "SocketInUse")
      }
      assert.isTrue(yield* exists(socket), "the other process's socket must not be removed")
    }),
  )

  it.scoped("refuses a path that is not a socket and leaves it alone", () =>
    Effect.gen(function* () {
      const socket = socketPath(yield* tempDir())
      yield* Effect.promise(() => fs.writeFile(socket, "precious"))
      const exit = yield* Effect.exit(startServer(socket, []))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.include(String(exit.cause), "not a socket")
      }
      assert.strictEqual(yield* Effect.promise(() => fs.readFile(socket, "utf8")), "precious")
    }),
  )
})

describe("handlers over the wire", () => {
  it.scoped("typed failures reach the client with their gRPC code and message", () =>
    Effect.gen(function* () {
      const socket = socketPath(yield* tempDir())
      const runtime = yield* Effect.runtime<never>()
      yield* serveUnixSocket(socket, [
        implement(
          IdentityDefinition,
          {
            getPluginMetadata: () =>
              Effect.fail(new NotFound({ what: "WAL segment 000000010000000000000007" })),
            getPluginCapabilities: () => Effect.die(new Error("secret-value-in-a-defect")),
            probe: () => Effect.succeed({ ready: true }),
          },
          runtime,
        ),
      ]).pipe(Effect.provide(NodeContext.layer))
      const identity = createClient(IdentityDefinition, yield* socketChannel(socket))

      const notFound = yield* Effect.promise(() =>
        identity.getPluginMetadata({}).then(
          () => undefined,
          (e: unknown) => e,
        ),
      )
      assert.instanceOf(notFound, ClientError)
      if (notFound instanceof ClientError) {
        assert.strictEqual(notFound.code, Status.NOT_FOUND)
        assert.strictEqual(notFound.details, "WAL segment 000000010000000000000007 not found")
      }
      const defect = yield* Effect.promise(() =>
        identity.getPluginCapabilities({}).then(
          () => undefined,
          (e: unknown) => e,
        ),
      )
      assert.instanceOf(defect, ClientError)
      if (defect instanceof ClientError) {
        assert.strictEqual(defect.code, Status.INTERNAL)
        assert.notInclude(defect.details, "secret-value-in-a-defect")
      }
    }),
  )

  it.scoped("a cancelled call interrupts its handler", () =>
    Effect.gen(function* () {
      const socket = socketPath(yield* tempDir())
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const runtime = yield* Effect.runtime<never>()
      yield* serveUnixSocket(socket, [
        implement(
          IdentityDefinition,
          {
            getPluginMetadata: () =>
              Deferred.succeed(started, undefined).pipe(
                Effect.zipRight(Effect.never),
                Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined)),
              ),
            getPluginCapabilities: () => Effect.succeed({ capabilities: [] }),
            probe: () => Effect.succeed({ ready: true }),
          },
          runtime,
        ),
      ]).pipe(Effect.provide(NodeContext.layer))
      const identity = createClient(IdentityDefinition, yield* socketChannel(socket))
      const controller = new AbortController()
      const pending = identity.getPluginMetadata({}, { signal: controller.signal }).then(
        () => "answered",
        (error: unknown) => (error instanceof Error ? error.name : String(error)),
      )
      yield* Deferred.await(started)
      controller.abort()
      assert.strictEqual(yield* Effect.promise(() => pending), "AbortError")
      // The server side notices the cancelled stream and interrupts the fiber (which would kill its child).
      yield* Deferred.await(interrupted).pipe(Effect.timeout("5 seconds"))
    }),
  )
})
