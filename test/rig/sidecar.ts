import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import type { FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Effect, type Scope } from "effect"
import { NODE_FLAGS } from "../../src/cli/nodeFlags.js"
import { socketPath } from "../../src/domain/plugin.js"
import { BASE_PATH, postgresAccount, type RigError, rigError, withLiveClock } from "./exec.js"
import { PROJECT_ROOT } from "./paths.js"

/** The production bundle the sidecar runs (`npm test` and `npm start` build it first). */
export const MAIN_JS = path.join(PROJECT_ROOT, "dist/main.js")

/** The Node that runs the bundle: the project's Node 24, which the postgres user can execute. */
export const NODE = process.execPath

/**
 * V8's compiled code of the bundle, as the image keeps it (NODE_COMPILE_CACHE): the first sidecar
 * fills it, the next ones start from it. Node keys it on the user and the flags, so it is the
 * postgres user's to write.
 */
const COMPILE_CACHE = path.join(PROJECT_ROOT, "dist/compile-cache")

const compileCacheFor = (account: { readonly uid: number; readonly gid: number }): string => {
  fs.mkdirSync(COMPILE_CACHE, { recursive: true })
  fs.chownSync(COMPILE_CACHE, account.uid, account.gid)
  return COMPILE_CACHE
}

export interface SidecarOptions {
  /** `instance` (a PostgreSQL pod's sidecar, the default) or `restore` (the full-recovery Job's). */
  readonly role?: "instance" | "restore"
  readonly pluginDir: string
  readonly manifestsDir: string
  /** The pod environment CloudNativePG copies into the sidecar: PGDATA, PGHOST, PGPORT, NAMESPACE, ... */
  readonly env: Readonly<Record<string, string>>
  /** Every line the sidecar writes goes here (appended across restarts). */
  readonly logFile: string
}

/** The `instance` role as a process run by the postgres user, like the sidecar (uid 26) in a pod. */
export interface Sidecar {
  readonly socket: string
  /** The directory CloudNativePG's instance manager scans for plugin sockets (`PLUGIN_SOCKET_DIR`). */
  readonly pluginDir: string
  /** Starts it and waits for its socket. */
  readonly start: () => Effect.Effect<void, RigError>
  /** SIGTERM and wait: a graceful stop. */
  readonly stop: () => Effect.Effect<void, RigError>
  /** SIGKILL: a crash, which leaves the socket file behind. */
  readonly kill: () => Effect.Effect<void, RigError>
  readonly pid: () => number | undefined
  readonly log: () => Effect.Effect<string>
}

const waitFor = (what: string, condition: () => boolean, timeoutMs: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!condition()) {
      if (Date.now() > deadline) {
        return yield* Effect.fail(rigError("sidecar", `${what} within ${timeoutMs} ms`))
      }
      yield* Effect.sleep("20 millis")
    }
  }).pipe(withLiveClock)

/**
 * Runs the plugin's `instance` role for the scope's lifetime; the scope kills it if still running.
 * It reads the Cluster, Stanza and Secrets from `manifestsDir` (the program's local mode).
 */
export const makeSidecar = (
  options: SidecarOptions,
): Effect.Effect<Sidecar, RigError, Scope.Scope | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const socket = socketPath(options.pluginDir)
    let child: ChildProcess | undefined
    const exited = () => child === undefined || child.exitCode !== null || child.signalCode !== null

    const account = yield* postgresAccount.pipe(Effect.provide(NodeContext.layer))
    const servedCount = () =>
      fs.existsSync(options.logFile)
        ? fs
            .readFileSync(options.logFile, "utf8")
            .split("\n")
            .filter((line) => line.includes('"msg":"serving CNPG-I"')).length
        : 0

    const start = () =>
      Effect.gen(function* () {
        if (!exited()) {
          return yield* Effect.fail(rigError("sidecar", "already running"))
        }
        const before = servedCount()
        const out = fs.openSync(options.logFile, "a")
        // Run as postgres directly (not through runuser), so signals reach the plugin itself.
        child = spawn(
          NODE,
          [
            ...NODE_FLAGS,
            MAIN_JS,
            options.role ?? "instance",
            "--plugin-path",
            options.pluginDir,
            "--manifests",
            options.manifestsDir,
            "--log-level",
            "debug",
          ],
          {
            env: { PATH: BASE_PATH, NODE_COMPILE_CACHE: compileCacheFor(account), ...options.env },
            stdio: ["ignore", out, out],
            cwd: "/",
            uid: account.uid,
            gid: account.gid,
          },
        )
        fs.closeSync(out)
        yield* waitFor(
          "the sidecar did not serve its socket",
          () => exited() || servedCount() > before,
          15_000,
        )
        if (exited()) {
          return yield* Effect.fail(
            rigError("sidecar", "exited at start", { stderr: fs.readFileSync(options.logFile, "utf8") }),
          )
        }
      })

    const signal = (name: NodeJS.Signals) =>
      Effect.gen(function* () {
        const running = child
        if (running === undefined || exited()) {
          return
        }
        running.kill(name)
        yield* waitFor(`the sidecar did not exit on ${name}`, exited, 30_000)
      })

    yield* Effect.addFinalizer(() => signal("SIGKILL").pipe(Effect.ignore))
    return {
      socket,
      pluginDir: options.pluginDir,
      start,
      stop: () => signal("SIGTERM"),
      kill: () => signal("SIGKILL"),
      pid: () => child?.pid,
      log: () => Effect.sync(() => fs.readFileSync(options.logFile, "utf8")),
    } satisfies Sidecar
  })
