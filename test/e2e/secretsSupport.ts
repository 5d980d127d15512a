import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Fiber, type Scope } from "effect"
import { Status } from "nice-grpc"
import { CallFailed } from "../../src/domain/errors.js"
import { withLiveClock } from "../rig/exec.js"

/** A recognisable secret value and the forms it could leak in. */
export interface Canary {
  readonly name: string
  readonly value: string
  /** `plain` always; `base64+<shift>` (and their base64url twins) unless the canary is too short for them. */
  readonly forms: ReadonlyArray<{ readonly form: string; readonly text: string }>
}

/**
 * The value and its base64 encoding at each of the three byte alignments: embedded in a longer encoded
 * blob, a secret shows up as one of those (minus the characters shared with its neighbours). Forms under
 * 16 characters are dropped, so random bytes cannot match them by chance.
 */
export const canary = (name: string, value: string): Canary => {
  const bytes = Buffer.from(value)
  const forms = [{ form: "plain", text: value }]
  for (const shift of [0, 1, 2]) {
    const encoded = Buffer.concat([Buffer.alloc(shift), bytes]).toString("base64")
    const text = encoded.slice(shift === 0 ? 0 : 4, 4 * Math.floor((shift + bytes.length) / 3))
    if (text.length >= 16) {
      forms.push({ form: `base64+${shift}`, text })
      const url = text.replaceAll("+", "-").replaceAll("/", "_")
      if (url !== text) forms.push({ form: `base64url+${shift}`, text: url })
    }
  }
  return { name, value, forms }
}

/** One canary found somewhere: where, which, in which form. */
export interface Leak {
  readonly where: string
  readonly canary: string
  readonly form: string
}

export const leaksIn = (where: string, content: string | Buffer, canaries: ReadonlyArray<Canary>) =>
  canaries.flatMap((c) =>
    c.forms.filter(({ text }) => content.includes(text)).map(({ form }) => ({ where, canary: c.name, form })),
  )

/** What a gRPC call answered, kept whole: code, details, the client's message and the trailers. */
export interface Outcome {
  readonly what: string
  readonly code: Status
  /** The status message (gRPC's `grpc-message` trailer). */
  readonly details: string
  /** How the client reports the refusal. */
  readonly message: string
}

/** Runs one call through the port of CloudNativePG's client; a refusal is a value. */
export const outcomeOf = (what: string, call: Effect.Effect<unknown, CallFailed>): Effect.Effect<Outcome> =>
  call.pipe(
    Effect.timeoutFail({
      duration: "240 seconds",
      onTimeout: () =>
        new CallFailed({
          address: "",
          rpc: what,
          code: Status.DEADLINE_EXCEEDED,
          reason: "no answer within 240 s",
        }),
    }),
    Effect.map((): Outcome => ({ what, code: Status.OK, details: "", message: "" })),
    Effect.catchTag("CallFailed", (error) =>
      Effect.succeed<Outcome>({ what, code: error.code, details: error.reason, message: error.message }),
    ),
    withLiveClock,
  )

interface Stat {
  readonly pid: number
  readonly ppid: number
  readonly comm: string
  readonly start: string
}

const readText = (file: string): string | undefined => {
  try {
    return fs.readFileSync(file, "utf8")
  } catch {
    // The process is gone (or a zombie).
    return undefined
  }
}

// "pid (comm) state ppid ... starttime(22) ...": comm may hold spaces and parentheses.
const readStat = (pid: number): Stat | undefined => {
  const text = readText(`/proc/${pid}/stat`)
  if (text === undefined) return undefined
  const close = text.lastIndexOf(")")
  const fields = text.slice(close + 2).split(" ")
  const ppid = Number.parseInt(fields[1] ?? "", 10)
  const start = fields[19]
  return Number.isInteger(ppid) && start !== undefined
    ? { pid, ppid, comm: text.slice(text.indexOf("(") + 1, close), start }
    : undefined
}

/** One process seen by the watcher (a pid at one start time), with every command line it showed. */
export interface SeenProcess {
  readonly pid: number
  /** The plugin process it descends from (its command line), or how else it was recognised. */
  readonly origin: string
  readonly comms: Set<string>
  readonly cmdlines: Set<string>
  /** A pgBackRest process's environment, read once (its options and secrets travel there, not in argv). */
  environment?: string | undefined
}

export interface ProcessWatch {
  /** Polls once more, stops, and returns every process seen. */
  readonly stop: () => Effect.Effect<ReadonlyArray<SeenProcess>>
  readonly ticks: () => number
}

/**
 * Samples `/proc` every `intervalMs` in a background fiber. The plugin's processes are those whose
 * command line `isPlugin` accepts (the sidecars, and the CLI clients PostgreSQL runs); every
 * descendant of one is recorded with its command line at each tick (a forked child shows its parent's
 * until it execs). pgBackRest's async workers detach (setsid, then their parent exits): they are
 * recognised by `marker` in their environment instead.
 */
export const watchProcesses = (
  isPlugin: (cmdline: string) => boolean,
  marker: string,
  intervalMs: number,
): Effect.Effect<ProcessWatch, never, Scope.Scope> =>
  Effect.gen(function* () {
    const plugin = new Map<string, boolean>()
    const marked = new Map<string, boolean>()
    const seen = new Map<string, SeenProcess>()
    let ticks = 0
    const cmdline = (pid: number) => readText(`/proc/${pid}/cmdline`)?.replaceAll("\0", " ").trim()

    const tick = () => {
      ticks += 1
      const stats = fs.readdirSync("/proc").flatMap((entry) => {
        const stat = /^\d+$/.test(entry) ? readStat(Number(entry)) : undefined
        return stat === undefined ? [] : [stat]
      })
      const children = new Map<number, Array<Stat>>()
      for (const stat of stats) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat])
      const chosen = new Map<number, { readonly stat: Stat; readonly origin: string }>()
      const descend = (stat: Stat, origin: string) => {
        if (chosen.has(stat.pid)) return
        chosen.set(stat.pid, { stat, origin })
        for (const child of children.get(stat.pid) ?? []) descend(child, origin)
      }
      for (const stat of stats) {
        const key = `${stat.pid}@${stat.start}`
        if (!plugin.has(key)) plugin.set(key, isPlugin(cmdline(stat.pid) ?? ""))
        if (plugin.get(key) === true) descend(stat, cmdline(stat.pid) ?? `pid ${stat.pid}`)
      }
      for (const stat of stats) {
        const key = `${stat.pid}@${stat.start}`
        if (chosen.has(stat.pid) || stat.comm !== "pgbackrest") continue
        if (!marked.has(key)) marked.set(key, (readText(`/proc/${stat.pid}/environ`) ?? "").includes(marker))
        if (marked.get(key) === true) chosen.set(stat.pid, { stat, origin: "environment" })
      }
      for (const { stat, origin } of chosen.values()) {
        const key = `${stat.pid}@${stat.start}`
        const record = seen.get(key) ?? { pid: stat.pid, origin, comms: new Set(), cmdlines: new Set() }
        seen.set(key, record)
        record.comms.add(stat.comm)
        if (stat.comm === "pgbackrest" && record.environment === undefined) {
          record.environment = readText(`/proc/${stat.pid}/environ`)
        }
        const line = cmdline(stat.pid)
        if (line !== undefined && line !== "") record.cmdlines.add(line)
      }
    }

    const fiber = yield* Effect.sync(tick).pipe(
      Effect.zipRight(Effect.sleep(intervalMs)),
      Effect.forever,
      withLiveClock,
      Effect.forkScoped,
    )
    return {
      ticks: () => ticks,
      stop: () =>
        Fiber.interrupt(fiber).pipe(
          Effect.zipRight(Effect.sync(tick)),
          Effect.map(() => [...seen.values()]),
        ),
    }
  })

/** What a scan of files found: how many files and bytes were read, and the leaks. */
export interface FileScan {
  readonly files: ReadonlyArray<string>
  readonly bytes: number
  readonly leaks: ReadonlyArray<Leak>
}

/**
 * Reads every regular file under `roots` (symbolic links are not followed) that `skip` lets through and
 * looks for the canaries. A file that disappears meanwhile (a running PostgreSQL's temporary files) is
 * passed over; any other read error fails the scan.
 */
export const scanFiles = (
  roots: ReadonlyArray<string>,
  canaries: ReadonlyArray<Canary>,
  skip: (file: string) => boolean = () => false,
): FileScan => {
  const files: Array<string> = []
  const leaks: Array<Leak> = []
  let bytes = 0
  const gone = (error: unknown) => error instanceof Error && "code" in error && error.code === "ENOENT"
  const visit = (file: string) => {
    let stat: fs.Stats
    try {
      stat = fs.lstatSync(file)
    } catch (error) {
      if (gone(error)) return
      throw error
    }
    if (stat.isDirectory()) {
      let entries: Array<string>
      try {
        entries = fs.readdirSync(file)
      } catch (error) {
        if (gone(error)) return
        throw error
      }
      for (const entry of entries) visit(path.join(file, entry))
      return
    }
    if (!stat.isFile() || skip(file)) return
    let content: Buffer
    try {
      content = fs.readFileSync(file)
    } catch (error) {
      if (gone(error)) return
      throw error
    }
    files.push(file)
    bytes += content.length
    leaks.push(...leaksIn(file, content, canaries))
  }
  for (const root of roots) visit(root)
  return { files, bytes, leaks }
}

/** The entries of `dirs` right now, to tell later which ones appeared during the test. */
export const entriesOf = (dirs: ReadonlyArray<string>): ReadonlySet<string> =>
  new Set(
    dirs.flatMap((dir) =>
      fs.existsSync(dir) ? fs.readdirSync(dir).map((entry) => path.join(dir, entry)) : [],
    ),
  )
