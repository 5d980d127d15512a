// `npm run bench`, first part: archiving through the plugin as CloudNativePG drives it (one WAL.Archive
// RPC per segment over the unix socket, from a long-lived client) against bare `pgbackrest archive-push`
// of the same segments to the same kind of repositories (HTTPS S3 + posix), in sync and async mode, with
// lz4 and gz; then the start-up cost of the CLI client. Starts a new bench/report.json.
import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { PostgresCluster } from "../test/rig/index.js"
import { archiveSides, type Compress, type Mode } from "./archiveSides.js"
import { cliStartup } from "./cliStartup.js"
import { type ArchiveRun, type ArchiveSection, mergeReport } from "./report.js"
import { fixed, knob, machine, say, summary, timeInto } from "./stats.js"

const SEGMENTS = knob("BENCH_SEGMENTS", 100)
const CLI_RUNS = knob("BENCH_CLI_RUNS", 15)

/** PostgreSQL with archiving "paused" (empty archive_command) keeps every segment it completes. */
const makeSegments = (count: number) =>
  Effect.gen(function* () {
    // Segments marked .done are PostgreSQL's to remove at a checkpoint: keep them all for every run.
    const pg = yield* PostgresCluster.make({
      archiveMode: "on",
      archiveCommand: "",
      extraConf: ["wal_keep_size = '16GB'", "max_wal_size = '16GB'", "checkpoint_timeout = '1d'"],
    })
    yield* pg.psql("CREATE TABLE bench (id bigint, payload text)")
    const segments: Array<string> = []
    for (let i = 0; i < count; i++) {
      yield* pg.psql(`INSERT INTO bench SELECT g, md5(g::text) FROM generate_series(1, 40000) g`)
      segments.push(yield* pg.switchWal())
    }
    return { pg, segments }
  })

/** Renames the segments' archive_status files: `.ready` (PostgreSQL still has to archive them) or `.done`. */
const setStatus = (pg: PostgresCluster.Postgres, segments: ReadonlyArray<string>, to: "ready" | "done") =>
  Effect.try({
    try: () => {
      const from = to === "ready" ? "done" : "ready"
      for (const segment of segments) {
        const status = path.join(pg.pgdata, "pg_wal", "archive_status", segment)
        if (fs.existsSync(`${status}.${from}`)) fs.renameSync(`${status}.${from}`, `${status}.${to}`)
      }
    },
    catch: (error) => new Error(`mark segments ${to}: ${String(error)}`),
  })

/** Waits until no pgBackRest async archive-push worker runs on this machine (the benchmark's own). */
const asyncWorkersGone = Effect.gen(function* () {
  const running = () =>
    fs
      .readdirSync("/proc")
      .filter((entry) => /^\d+$/.test(entry))
      .some((pid) => {
        try {
          return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("archive-push:async")
        } catch {
          return false
        }
      })
  const deadline = Date.now() + 120_000
  while (running()) {
    if (Date.now() > deadline) {
      return yield* Effect.fail(new Error("a pgBackRest async worker still runs after 120 s"))
    }
    yield* Effect.sleep("20 millis")
  }
})

const markArchived = (pg: PostgresCluster.Postgres, segments: ReadonlyArray<string>) =>
  setStatus(pg, segments, "done")

const compare = (
  pg: PostgresCluster.Postgres,
  segments: ReadonlyArray<string>,
  mode: Mode,
  compress: Compress,
  cliSegments: ReadonlyArray<string>,
) =>
  Effect.gen(function* () {
    const sides = yield* archiveSides(pg, mode, compress)
    // The first segment warms both paths up (the plugin initialises its stanza there, once per layout);
    // then, in sync mode, each segment goes through both, in alternating order, so that neither profits
    // from a cache the other warmed or pays for the machine's drift alone.
    const [first, ...rest] = segments
    const bareTimes: Array<number> = []
    const pluginTimes: Array<number> = []
    const bareCall = (segment: string) => timeInto(sides.barePush(segment), bareTimes)
    const pluginCall = (segment: string) => timeInto(sides.pluginPush(segment), pluginTimes)
    if (mode === "async") {
      // An asynchronous archive-push starts a worker that pushes every segment marked .ready, ahead of
      // the calls. Interleaved, the bare and the plugin's workers would race each other over the same
      // segments on two cores, and each side's calls would measure how far its worker had got in that
      // race. So each side runs a whole block alone, with only that block .ready: half the segments
      // bare first, the other half plugin first.
      yield* setStatus(pg, rest, "done")
      yield* setStatus(pg, first === undefined ? [] : [first], "ready")
      if (first !== undefined) {
        yield* sides.barePush(first)
        yield* sides.pluginPush(first)
      }
      yield* asyncWorkersGone
      const half = Math.ceil(rest.length / 2)
      for (const [block, sidesInOrder] of [
        [rest.slice(0, half), [bareCall, pluginCall]],
        [rest.slice(half), [pluginCall, bareCall]],
      ] as const) {
        yield* setStatus(pg, block, "ready")
        for (const call of sidesInOrder) {
          yield* Effect.forEach(block, call, { discard: true })
          // The worker lingers to look for more .ready files: let it end before the other side starts
          // and before the statuses change under it (it would find none, and leave an error behind).
          yield* asyncWorkersGone
        }
        yield* setStatus(pg, block, "done")
      }
      yield* setStatus(pg, rest, "ready")
    } else {
      if (first !== undefined) {
        yield* sides.barePush(first)
        yield* sides.pluginPush(first)
      }
      for (const [index, segment] of rest.entries()) {
        yield* index % 2 === 0
          ? Effect.zipRight(bareCall(segment), pluginCall(segment))
          : Effect.zipRight(pluginCall(segment), bareCall(segment))
      }
    }
    const bare = summary(bareTimes)
    const plugin = summary(pluginTimes)
    const run: ArchiveRun = { ratio: plugin.totalMs / bare.totalMs, bare, plugin }
    const cli = cliSegments.length > 0 ? yield* cliStartup(sides, pg.pgdata, cliSegments) : undefined
    // Async archive-push also pushes every other segment marked .ready ahead of time: the CLI's segments
    // are done with, so keep later configurations' read-ahead to the measured segments alone.
    yield* markArchived(pg, cliSegments)
    return { run, cli }
  }).pipe(Effect.scoped)

const describe = (label: string, run: ArchiveRun) =>
  say(
    `${label.padEnd(9)} bare: ${fixed(run.bare.segmentsPerSecond, 1)} seg/s (median ${fixed(run.bare.medianMs)} ms, p95 ${fixed(run.bare.p95Ms)} ms)` +
      ` | plugin: ${fixed(run.plugin.segmentsPerSecond, 1)} seg/s (median ${fixed(run.plugin.medianMs)} ms, p95 ${fixed(run.plugin.p95Ms)} ms)` +
      ` | plugin/bare time ${fixed(run.ratio, 3)}`,
  )

const program = Effect.gen(function* () {
  yield* say(
    `archiving ${SEGMENTS} segments of 16 MiB per configuration (sync, async × lz4, gz), repositories: HTTPS S3 + posix`,
  )
  const { pg, segments } = yield* makeSegments(SEGMENTS + 2 * CLI_RUNS)
  const measured = segments.slice(0, SEGMENTS)
  const spare = segments.slice(SEGMENTS)
  // lz4 then gz per mode; the CLI client is measured once, on the sync lz4 sidecar (a default Stanza).
  const modeRuns = (mode: Mode) =>
    Effect.gen(function* () {
      const lz4 = yield* compare(pg, measured, mode, "lz4", mode === "sync" ? spare : [])
      yield* describe(`${mode} lz4`, lz4.run)
      const gz = yield* compare(pg, measured, mode, "gz", [])
      yield* describe(`${mode} gz`, gz.run)
      return { figures: { ratio: lz4.run.ratio, lz4: lz4.run, gz: gz.run }, cli: lz4.cli }
    })
  const sync = yield* modeRuns("sync")
  const async = yield* modeRuns("async")
  const cli = sync.cli
  if (cli !== undefined) {
    yield* say(
      `cli client: median ${fixed(cli.clientMedianMs)} ms (p95 ${fixed(cli.clientP95Ms)} ms) vs RPC median ${fixed(cli.rpcMedianMs)} ms` +
        ` | start-up ${fixed(cli.startupMs)} ms | node main.js --version ${fixed(cli.versionMedianMs)} ms`,
    )
  }
  const archive: ArchiveSection = {
    segments: SEGMENTS,
    segmentMiB: 16,
    repositories: "HTTPS S3 + posix",
    sync: sync.figures,
    async: async.figures,
  }
  yield* mergeReport(
    {
      generatedAt: new Date().toISOString(),
      machine: machine(),
      archive,
      ...(cli === undefined ? {} : { cliStartup: cli }),
    },
    { fresh: true },
  )
  yield* say("wrote bench/report.json")
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(NodeContext.layer)))
