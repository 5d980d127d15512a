import { spawn } from "node:child_process"
import { Effect } from "effect"

/**
 * Bare pgBackRest for the baselines: run as postgres directly (no runuser, no shell), with exactly the
 * given options, the way the sidecar itself spawns it, so that only the plugin's own cost differs.
 */
export const barePgBackRest = (
  args: ReadonlyArray<string>,
  env: Readonly<Record<string, string>>,
  account: { readonly uid: number; readonly gid: number },
) =>
  Effect.async<void, Error>((resume) => {
    const child = spawn("/usr/bin/pgbackrest", [...args], {
      env: { PATH: "/usr/bin:/bin", HOME: "/tmp", ...env },
      uid: account.uid,
      gid: account.gid,
      stdio: ["ignore", "ignore", "pipe"],
    })
    let stderr = ""
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.once("exit", (code) =>
      resume(
        code === 0
          ? Effect.void
          : Effect.fail(new Error(`pgbackrest ${args.join(" ")} exited ${code}: ${stderr}`)),
      ),
    )
  })
