import * as nodeFs from "node:fs"
import * as FileSystem from "@effect/platform/FileSystem"
import { Duration, Effect, Option, Schedule } from "effect"
import { withLiveClock } from "./exec.js"

export interface ProcStat {
  readonly pid: number
  readonly comm: string
  readonly state: string
  readonly ppid: number
}

// /proc/<pid>/stat is "pid (comm) state ppid ...", and comm may itself hold spaces and parentheses.
const parseStat = (pid: number, text: string): Option.Option<ProcStat> => {
  const open = text.indexOf("(")
  const close = text.lastIndexOf(")")
  if (open < 0 || close < open) return Option.none()
  const [state = "", ppid = ""] = text
    .slice(close + 2)
    .split(" ")
    .slice(0, 2)
  const parent = Number.parseInt(ppid, 10)
  return Number.isInteger(parent)
    ? Option.some({ pid, comm: text.slice(open + 1, close), state, ppid: parent })
    : Option.none()
}

/** `/proc/<pid>/stat` read now, synchronously (for polling predicates); none once the process is gone. */
export const statNow = (pid: number): Option.Option<ProcStat> => {
  try {
    return parseStat(pid, nodeFs.readFileSync(`/proc/${pid}/stat`, "utf8"))
  } catch {
    return Option.none()
  }
}

const readStat = (fs: FileSystem.FileSystem, pid: number): Effect.Effect<Option.Option<ProcStat>> =>
  fs.readFileString(`/proc/${pid}/stat`).pipe(
    Effect.map((text) => parseStat(pid, text)),
    Effect.orElseSucceed(() => Option.none()),
  )

/** Whether `pid` is a live (not zombie) process whose command name contains `comm`. */
export const isAlive = (pid: number, comm: string): Effect.Effect<boolean, never, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => readStat(fs, pid)).pipe(
    Effect.map(Option.exists((stat) => stat.state !== "Z" && stat.comm.includes(comm))),
  )

/** Direct children of `pid` (PostgreSQL backends each lead their own session, so no group kill reaches them). */
export const childrenOf = (pid: number): Effect.Effect<ReadonlyArray<number>, never, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const entries = yield* fs.readDirectory("/proc").pipe(Effect.orElseSucceed((): Array<string> => []))
    const pids = entries.filter((entry) => /^\d+$/.test(entry)).map((entry) => Number.parseInt(entry, 10))
    const stats = yield* Effect.forEach(pids, (p) => readStat(fs, p), { concurrency: 16 })
    return stats.flatMap(Option.match({ onNone: () => [], onSome: (s) => (s.ppid === pid ? [s.pid] : []) }))
  })

/** SIGKILLs each process that is still alive with that name, then waits (up to 5 s) until they are gone. */
export const killAll = (
  pids: ReadonlyArray<number>,
  comm: string,
): Effect.Effect<void, never, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    for (const pid of pids) {
      if (yield* isAlive(pid, comm)) {
        yield* Effect.try(() => process.kill(pid, "SIGKILL")).pipe(Effect.ignore)
      }
    }
    yield* Effect.forEach(pids, (pid) => isAlive(pid, comm)).pipe(
      Effect.map((alive) => alive.some(Boolean)),
      Effect.repeat({
        schedule: Schedule.spaced(Duration.millis(100)).pipe(Schedule.intersect(Schedule.recurs(50))),
        while: Boolean,
      }),
      Effect.asVoid,
    )
  }).pipe(withLiveClock)
