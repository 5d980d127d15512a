import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { socketPath } from "../../src/domain/plugin.js"
import { tempDir } from "../support/tempDir.js"

// These tests run the production bundle (`npm test` builds it first), as the container would.
const MAIN = path.resolve("dist/main.js")

interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

const collect = (child: ChildProcess) => {
  let stdout = ""
  let stderr = ""
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString()
  })
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  return new Promise<Finished>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

const runCli = (args: ReadonlyArray<string>) =>
  Effect.promise(() =>
    collect(spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })),
  )

/** Starts a long-running role; the scope kills it if the test did not stop it. */
const startRole = (args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(process.execPath, [MAIN, ...args], { stdio: ["ignore", "pipe", "pipe"] })
      return { child, finished: collect(child) }
    }),
    ({ child }) => Effect.sync(() => child.kill("SIGKILL")),
  )

const waitFor = (condition: () => Promise<boolean>, timeoutMs: number) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (await condition()) {
        return true
      }
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    return false
  })

const exists = (file: string) =>
  fs.stat(file).then(
    () => true,
    () => false,
  )

describe("cnpg-pgbackrest command line", () => {
  it.effect("rejects an unknown role with the usage text and exit code 2", () =>
    Effect.gen(function* () {
      const result = yield* runCli(["archive"])
      assert.strictEqual(result.code, 2)
      assert.include(result.stderr, 'unknown role "archive"')
      assert.include(result.stderr, "Usage: cnpg-pgbackrest <role>")
    }),
  )

  it.effect("rejects an unknown flag with exit code 2", () =>
    Effect.gen(function* () {
      const result = yield* runCli(["instance", "--plugins-path", "/tmp"])
      assert.strictEqual(result.code, 2)
      assert.include(result.stderr, "--plugins-path")
    }),
  )

  it.effect("prints the package version", () =>
    Effect.gen(function* () {
      const result = yield* runCli(["--version"])
      assert.strictEqual(result.code, 0)
      assert.match(result.stdout.trim(), /^\d+\.\d+\.\d+$/)
    }),
  )

  it.scoped("healthcheck fails when nothing serves the socket", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const result = yield* runCli(["healthcheck", "--plugin-path", dir])
      assert.notStrictEqual(result.code, 0)
      assert.include(result.stderr, "unhealthy")
    }),
  )

  it.scoped("instance serves until SIGTERM, healthcheck passes, and the socket is removed on exit", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const socket = socketPath(dir)
      const started = Date.now()
      const { child, finished } = yield* startRole(["instance", "--plugin-path", dir, "--log-level", "debug"])
      assert.isTrue(yield* waitFor(() => exists(socket), 10_000), "socket never appeared")
      const readyMs = Date.now() - started
      console.log(`instance start-to-socket: ${readyMs} ms`)

      const health = yield* runCli(["healthcheck", "--plugin-path", dir])
      assert.strictEqual(health.code, 0, health.stderr)

      child.kill("SIGTERM")
      const result = yield* Effect.promise(() => finished)
      assert.strictEqual(result.code, 0, result.stdout + result.stderr)
      assert.isFalse(yield* Effect.promise(() => exists(socket)))

      const lines = result.stdout.trim().split("\n")
      const records = lines.map((line) => JSON.parse(line))
      for (const record of records) {
        assert.containsAllKeys(record, ["level", "ts", "logger", "msg"])
      }
      const messages = records.map((record) => record.msg)
      assert.includeMembers(messages, ["starting", "serving CNPG-I", "stopped"])

      const after = yield* runCli(["healthcheck", "--plugin-path", dir])
      assert.notStrictEqual(after.code, 0)
    }),
  )

  it.scoped("a second instance on the same socket refuses to start and leaves the first serving", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const socket = socketPath(dir)
      yield* startRole(["instance", "--plugin-path", dir])
      assert.isTrue(yield* waitFor(() => exists(socket), 10_000))
      const second = yield* runCli(["instance", "--plugin-path", dir])
      assert.strictEqual(second.code, 1)
      assert.include(second.stdout, "another process is serving")
      const health = yield* runCli(["healthcheck", "--plugin-path", dir])
      assert.strictEqual(health.code, 0, health.stderr)
    }),
  )

  it.scoped("log level error keeps info lines out", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      // Occupy the path with a file so the role fails at once and exits.
      yield* Effect.promise(() => fs.writeFile(socketPath(dir), ""))
      const quiet = yield* runCli(["restore", "--plugin-path", dir, "--log-level", "error"])
      assert.strictEqual(quiet.code, 1)
      const levels = quiet.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line).level)
      assert.deepStrictEqual(levels, ["error"])
    }),
  )
})
