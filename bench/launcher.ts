// A small, long-lived process that starts the bare pgBackRest runs for the benchmark. Node's `spawn`
// forks the calling process, and a fork costs time in proportion to what the caller has resident
// (about 0.1 ms per MiB on the benchmark machine): started from the benchmark's own large process,
// bare pgBackRest would carry that cost, the plugin's sidecar carries its own. PostgreSQL forks its
// small archiver for an archive_command; this process plays that part. No dependencies: it stays small.
import { spawn } from "node:child_process"

interface Run {
  readonly id: number
  readonly command: string
  readonly args: ReadonlyArray<string>
  readonly env: Readonly<Record<string, string>>
  readonly uid: number
  readonly gid: number
}

const isRun = (value: unknown): value is Run =>
  typeof value === "object" && value !== null && "id" in value && "command" in value && "args" in value

process.on("message", (message: unknown) => {
  if (!isRun(message)) return
  const child = spawn(message.command, [...message.args], {
    env: message.env,
    uid: message.uid,
    gid: message.gid,
    cwd: "/",
    stdio: ["ignore", "ignore", "pipe"],
  })
  let stderr = ""
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  child.once("error", (error) => process.send?.({ id: message.id, code: -1, stderr: String(error) }))
  child.once("exit", (code) => process.send?.({ id: message.id, code: code ?? -1, stderr }))
})
// The benchmark is gone: so is this.
process.on("disconnect", () => process.exit(0))
