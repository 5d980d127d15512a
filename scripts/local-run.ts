// The README's first command: runs the plugin locally on an embedded default and shows what it does.
// Today that is the `instance` role on a temporary plugin directory, called over its unix socket the
// way CloudNativePG's instance manager calls it; WAL archiving to a throwaway PostgreSQL and a local S3
// endpoint joins when that flow is built.
import { spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { Effect } from "effect"
import { createClient } from "nice-grpc"
import { socketPath } from "../src/domain/plugin.js"
import { IdentityDefinition, PluginCapability_Service_Type } from "../src/generated/identity.js"
import { checkHealth, socketChannel } from "../src/services/pluginClient.js"

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

const waitForSocket = (socket: string, timeoutMs: number) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (
        await fs.stat(socket).then(
          () => true,
          () => false,
        )
      ) {
        return true
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return false
  })

const program = Effect.gen(function* () {
  const dir = yield* Effect.acquireRelease(
    Effect.promise(() => fs.mkdtemp(path.join(os.tmpdir(), "cnpg-pgbackrest-local-"))),
    (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true })),
  )
  const socket = socketPath(dir)
  const main = path.join(path.dirname(new URL(import.meta.url).pathname), "main.js")
  yield* say(`starting the instance role: ${process.execPath} ${main} instance --plugin-path ${dir}`)
  const started = Date.now()
  const sidecar = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, [main, "instance", "--plugin-path", dir], {
        stdio: ["ignore", "inherit", "inherit"],
      }),
    ),
    (child) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null) {
          return resume(Effect.void)
        }
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGTERM")
      }),
  )
  if (!(yield* waitForSocket(socket, 10_000))) {
    return yield* Effect.die(new Error(`the plugin did not create ${socket} within 10 s`))
  }
  yield* say(`socket ${socket} ready after ${Date.now() - started} ms (pid ${sidecar.pid})`)

  yield* checkHealth(socket, 5_000)
  yield* say("health check: SERVING")

  const identity = createClient(IdentityDefinition, yield* socketChannel(socket))
  const metadata = yield* Effect.promise(() => identity.getPluginMetadata({}))
  yield* say(
    `GetPluginMetadata: ${metadata.name} ${metadata.version} (${metadata.displayName}, ${metadata.maturity})`,
  )
  const { capabilities } = yield* Effect.promise(() => identity.getPluginCapabilities({}))
  const names = capabilities.map((capability) =>
    capability.type?.$case === "service" ? PluginCapability_Service_Type[capability.type.value.type] : "?",
  )
  yield* say(`GetPluginCapabilities: [${names.join(", ")}]`)
  const probe = yield* Effect.promise(() => identity.probe({}))
  yield* say(`Probe: ready=${probe.ready}`)
  yield* say("stopping the plugin (SIGTERM)")
})

Effect.runPromise(Effect.scoped(program)).then(
  () => process.stdout.write("done: the plugin stopped and its socket and directory were removed\n"),
  (error: unknown) => {
    process.stderr.write(`local run failed: ${error instanceof Error ? error.message : String(error)}\n`)
    process.exitCode = 1
  },
)
