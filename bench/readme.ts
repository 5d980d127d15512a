// `npm run bench:readme`: prints the README's "Latest figures" (introduction, table, sidecar and CLI
// paragraph) from bench/report.json, so that one bench run refreshes the README by copy and paste.
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { type ArchiveRun, type CallSummary, type Report, readReport } from "./report.js"

const rate = (side: CallSummary) =>
  `${side.segmentsPerSecond.toFixed(1)} segments/s (median ${side.medianMs.toFixed(0)} ms, p95 ${side.p95Ms.toFixed(0)} ms)`

const seconds = (value: number) => `${value.toPrecision(3)} s`

/** A markdown table with every column padded to its widest cell. */
const table = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = (rows[0] ?? []).map((_, column) =>
    Math.max(3, ...rows.map((row) => (row[column] ?? "").length)),
  )
  const line = (row: ReadonlyArray<string>) =>
    `| ${widths.map((width, column) => (row[column] ?? "").padEnd(width)).join(" | ")} |`
  const [header = [], ...body] = rows
  return [
    line(header),
    `| ${widths.map((width) => "-".repeat(width)).join(" | ")} |`,
    ...body.map(line),
  ].join("\n")
}

/** Wraps a paragraph at the README's width. */
const wrap = (paragraph: string, width = 105): string =>
  paragraph
    .split(" ")
    .reduce<Array<string>>((lines, word) => {
      const last = lines.at(-1)
      if (last !== undefined && last.length + 1 + word.length <= width)
        lines[lines.length - 1] = `${last} ${word}`
      else lines.push(word)
      return lines
    }, [])
    .join("\n")

const archiveRow = (label: string, run: ArchiveRun) => [
  label,
  rate(run.bare),
  rate(run.plugin),
  run.ratio.toFixed(2),
]

/** The markdown for the README from a decoded report; sections the report lacks are left out. */
export const latestFigures = (report: Report): string => {
  const { archive, backupRestore: backup, sidecar, cliStartup: cli } = report
  const rows: Array<ReadonlyArray<string>> = [
    ["", "bare pgBackRest", "through the plugin", "plugin / bare time"],
  ]
  if (archive !== undefined) {
    rows.push(
      archiveRow("sync archiving, lz4", archive.sync.lz4),
      archiveRow("sync archiving, gz", archive.sync.gz),
      archiveRow("async archiving, lz4", archive.async.lz4),
      archiveRow("async archiving, gz", archive.async.gz),
    )
  }
  if (backup !== undefined) {
    rows.push(
      [
        `full backup, ${backup.database}`,
        seconds(backup.backup.bareSeconds),
        seconds(backup.backup.pluginSeconds),
        backup.backup.ratio.toFixed(2),
      ],
      [
        "restore of that backup",
        seconds(backup.restore.bareSeconds),
        seconds(backup.restore.pluginSeconds),
        backup.restore.ratio.toFixed(2),
      ],
    )
  }
  const cores = report.machine === undefined ? "" : `, ${report.machine.cpus} cores`
  const intro =
    archive === undefined
      ? ""
      : "Archiving through the plugin as CloudNativePG drives it (one `WAL.Archive` RPC per segment over the " +
        `unix socket) against bare \`pgbackrest archive-push\` of the same ${archive.segments} segments of ` +
        `${archive.segmentMiB} MiB, ${archive.repositories} repositories; sync calls interleaved, async ones in ` +
        "alternating blocks (an async worker pushes ahead of the calls); bare pgBackRest is started from a " +
        "small process, as PostgreSQL's archiver would " +
        `(\`npm run bench\`${cores}); \`bench/report.json\` holds the details and \`bench/chart.png\` draws them.`
  const halfway = sidecar === undefined ? 0 : Math.floor(sidecar.archives / 2)
  const notes = [
    sidecar === undefined
      ? ""
      : `The sidecar is ready ${sidecar.readyMs.toFixed(0)} ms after it starts (median of ${sidecar.readyRunsMs.length} starts). ` +
        `Its resident memory is ${sidecar.rssReadyMiB.toFixed(0)} MiB when ready, ${sidecar.rssHalfwayMiB.toFixed(0)} MiB after ` +
        `${halfway} archives and ${sidecar.rssMiB.toFixed(0)} MiB after ${sidecar.archives} ` +
        `(${sidecar.walSegmentMiB} MiB segments, sync, lz4): ${sidecar.rssGrowthMiB >= 0 ? "+" : ""}${sidecar.rssGrowthMiB.toFixed(1)} MiB ` +
        `over the last ${sidecar.archives - halfway}.`,
    cli === undefined
      ? ""
      : `Starting the CLI client (\`node dist/main.js client wal-archive\`, the local run's archive_command) adds ` +
        `${cli.startupMs.toFixed(0)} ms per segment to a direct RPC (median ${cli.clientMedianMs.toFixed(0)} ms against ` +
        `${cli.rpcMedianMs.toFixed(0)} ms over ${cli.runs} runs each; \`node dist/main.js --version\` alone takes ` +
        `${cli.versionMedianMs.toFixed(0)} ms).`,
  ].filter((note) => note !== "")
  return [
    ...(intro === "" ? [] : [wrap(intro), ""]),
    table(rows),
    "",
    ...notes.flatMap((note) => [wrap(note), ""]),
  ].join("\n")
}

const program = Effect.gen(function* () {
  const report = yield* readReport()
  yield* Effect.sync(() => process.stdout.write(latestFigures(report)))
})

NodeRuntime.runMain(program.pipe(Effect.provide(NodeContext.layer)))
