import { type ChildProcess, fork } from "node:child_process"
import * as path from "node:path"
import { Effect, Schema } from "effect"

const Done = Schema.Struct({ id: Schema.Number, code: Schema.Number, stderr: Schema.String })
type Done = typeof Done.Type

let launcher: ChildProcess | undefined
let nextId = 0
const pending = new Map<number, (done: Done) => void>()

/** bench/launcher.ts, started once and kept: every bare run is forked from it, not from this process. */
const theLauncher = (): ChildProcess => {
  if (launcher === undefined) {
    const started = fork(path.join(import.meta.dirname, "bench-launcher.js"), [], { stdio: "inherit" })
    started.on("message", (message: unknown) => {
      if (!Schema.is(Done)(message)) return
      pending.get(message.id)?.(message)
      pending.delete(message.id)
    })
    // Not a reason to keep the benchmark alive once its work is done.
    started.unref()
    started.channel?.unref()
    launcher = started
  }
  return launcher
}

/** Runs a program as `account` directly (no runuser, no shell) with exactly `env` plus PATH and HOME. */
export const runAs = (
  command: string,
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>,
  account: { readonly uid: number; readonly gid: number },
) =>
  Effect.async<void, Error>((resume) => {
    const id = nextId++
    const child = theLauncher()
    child.channel?.ref()
    pending.set(id, (done) => {
      if (pending.size === 1) child.channel?.unref()
      resume(
        done.code === 0
          ? Effect.void
          : Effect.fail(new Error(`${command} ${args.join(" ")} exited ${done.code}: ${done.stderr}`)),
      )
    })
    child.send({
      id,
      command,
      args,
      env: { PATH: "/usr/bin:/bin", HOME: "/tmp", ...env },
      uid: account.uid,
      gid: account.gid,
    })
  })

/**
 * Bare pgBackRest for the baselines: run as postgres directly (no runuser, no shell), with exactly the
 * given options, the way the sidecar itself spawns it, so that only the plugin's own cost differs.
 */
export const barePgBackRest = (
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>,
  account: { readonly uid: number; readonly gid: number },
) => runAs("/usr/bin/pgbackrest", args, env, account)
