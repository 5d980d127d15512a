// The shape of bench/report.json, shared by the parts of `npm run bench` that write it and by the chart
// and README table that read it back (decoded, never trusted as written).
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect, Schema } from "effect"
import { PROJECT_ROOT } from "../test/rig/paths.js"

export const REPORT_FILE = path.join(PROJECT_ROOT, "bench", "report.json")

/** Per-call figures of one side (bare or plugin) of an archiving run. */
export const CallSummary = Schema.Struct({
  segmentsPerSecond: Schema.Number,
  medianMs: Schema.Number,
  p95Ms: Schema.Number,
  totalMs: Schema.Number,
})
export type CallSummary = typeof CallSummary.Type

/** One archiving configuration (mode × compression): ratio = plugin time / bare time. */
export const ArchiveRun = Schema.Struct({
  ratio: Schema.Number,
  bare: CallSummary,
  plugin: CallSummary,
})
export type ArchiveRun = typeof ArchiveRun.Type

/** A mode; its own `ratio` is the lz4 one (the key the README and issue 8 track). */
export const ArchiveMode = Schema.Struct({ ratio: Schema.Number, lz4: ArchiveRun, gz: ArchiveRun })
export type ArchiveMode = typeof ArchiveMode.Type

export const ArchiveSection = Schema.Struct({
  segments: Schema.Number,
  segmentMiB: Schema.Number,
  repositories: Schema.String,
  sync: ArchiveMode,
  async: ArchiveMode,
})
export type ArchiveSection = typeof ArchiveSection.Type

/** `client wal-archive` (a Node process per segment) against one RPC from a long-lived client. */
export const CliStartup = Schema.Struct({
  runs: Schema.Number,
  clientMedianMs: Schema.Number,
  clientP95Ms: Schema.Number,
  rpcMedianMs: Schema.Number,
  rpcP95Ms: Schema.Number,
  /** clientMedianMs − rpcMedianMs: what starting the client adds to each archive_command. */
  startupMs: Schema.Number,
  /** `node dist/main.js --version`: loading Node and the bundle alone. */
  versionMedianMs: Schema.Number,
})
export type CliStartup = typeof CliStartup.Type

export const RssSample = Schema.Struct({ archives: Schema.Number, rssMiB: Schema.Number })

export const SidecarSection = Schema.Struct({
  /** Median spawn-to-"serving CNPG-I" time over `readyRunsMs`. */
  readyMs: Schema.Number,
  readyRunsMs: Schema.Array(Schema.Number),
  /** VmRSS of the sidecar process after `archives` WAL.Archive calls. */
  rssMiB: Schema.Number,
  rssReadyMiB: Schema.Number,
  archives: Schema.Number,
  walSegmentMiB: Schema.Number,
  /** After archives / 2 calls. */
  rssHalfwayMiB: Schema.Number,
  /** rssMiB − rssHalfwayMiB: growth over the second half of the calls. */
  rssGrowthMiB: Schema.Number,
  rssSamples: Schema.Array(RssSample),
})
export type SidecarSection = typeof SidecarSection.Type

const Timed = Schema.Struct({
  pluginSeconds: Schema.Number,
  bareSeconds: Schema.Number,
  ratio: Schema.Number,
})

export const BackupRestoreSection = Schema.Struct({
  database: Schema.String,
  backup: Timed,
  restore: Timed,
})
export type BackupRestoreSection = typeof BackupRestoreSection.Type

/** The whole report; every section is optional so that each part of the bench can run alone. */
export const Report = Schema.Struct({
  generatedAt: Schema.optional(Schema.String),
  machine: Schema.optional(Schema.Struct({ cpus: Schema.Number, cpuModel: Schema.String })),
  archive: Schema.optional(ArchiveSection),
  cliStartup: Schema.optional(CliStartup),
  sidecar: Schema.optional(SidecarSection),
  backupRestore: Schema.optional(BackupRestoreSection),
})
export type Report = typeof Report.Type

const ReportJson = Schema.parseJson(Report)

/** Reads and decodes bench/report.json; an absent file is an empty report. */
export const readReport = (file = REPORT_FILE): Effect.Effect<Report, Error> =>
  Effect.gen(function* () {
    if (!fs.existsSync(file)) return {}
    const text = yield* Effect.try({
      try: () => fs.readFileSync(file, "utf8"),
      catch: (error) => new Error(`cannot read ${file}: ${String(error)}`),
    })
    return yield* Schema.decodeUnknown(ReportJson)(text).pipe(
      Effect.mapError((error) => new Error(`${file} is not a bench report: ${error.message}`)),
    )
  })

const write = (report: Report, file: string) =>
  Effect.try({
    try: () => fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`),
    catch: (error) => new Error(`cannot write ${file}: ${String(error)}`),
  })

/** Merges sections into the report on disk (`fresh` starts a new one, as the first part of a run does). */
export const mergeReport = (sections: Report, options: { readonly fresh?: boolean } = {}) =>
  Effect.gen(function* () {
    // A report from an older bench (another shape) is replaced rather than merged into.
    const previous = options.fresh
      ? {}
      : yield* readReport().pipe(
          Effect.tapError((error) => Effect.logWarning(`starting a new report: ${error.message}`)),
          Effect.orElseSucceed((): Report => ({})),
        )
    yield* write({ ...previous, ...sections }, REPORT_FILE)
  })
