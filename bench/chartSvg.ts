// The bench chart as SVG, from a decoded report: bare pgBackRest against the plugin, side by side, for
// each archiving configuration (mean time per segment) and for the backup and the restore (seconds).
import type { ArchiveRun, Report } from "./report.js"

interface Group {
  readonly label: string
  readonly bare: number
  readonly plugin: number
  /** Plugin time / bare time, as the report computed it. */
  readonly ratio: number
}

interface Panel {
  readonly title: string
  readonly subtitle: string
  readonly unit: string
  readonly groups: ReadonlyArray<Group>
}

const WIDTH = 1100
const HEIGHT = 560
const BARE = "#5b7fa6"
const PLUGIN = "#e08a3c"
const FONT = "DejaVu Sans, Verdana, sans-serif"

const escapeXml = (raw: string) =>
  raw.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")

const text = (x: number, y: number, content: string, attrs = "") =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${escapeXml(content)}</text>`

/** A round axis maximum above `value`, in at most 7 steps of 1, 2 or 5 times a power of ten. */
const niceScale = (value: number): { readonly max: number; readonly step: number } => {
  const magnitude = 10 ** Math.floor(Math.log10(Math.max(value, 1e-9)))
  const step =
    [0.1, 0.2, 0.5, 1, 2, 5, 10].map((f) => f * magnitude).find((s) => Math.ceil(value / s) <= 7) ??
    10 * magnitude
  return { max: Math.max(step, Math.ceil(value / step) * step), step }
}

const label = (value: number) => (value >= 100 ? value.toFixed(0) : value.toPrecision(3))

const panel = (p: Panel, x: number, y: number, width: number, height: number): string => {
  const top = y + 56
  const bottom = y + height - 50
  const left = x + 50
  const plotWidth = width - 60
  const { max, step } = niceScale(Math.max(...p.groups.flatMap((g) => [g.bare, g.plugin])))
  const yOf = (value: number) => bottom - (value / max) * (bottom - top)
  const parts = [
    text(x + width / 2, y + 6, p.title, 'text-anchor="middle" font-size="15" font-weight="bold"'),
    text(x + width / 2, y + 24, p.subtitle, 'text-anchor="middle" font-size="12" fill="#555"'),
  ]
  const digits = step >= 1 ? 0 : Math.ceil(-Math.log10(step))
  for (let tick = 0; tick <= max + step / 2; tick += step) {
    parts.push(
      `<line x1="${left}" x2="${left + plotWidth}" y1="${yOf(tick).toFixed(1)}" y2="${yOf(tick).toFixed(1)}" stroke="#ddd"/>`,
      text(left - 6, yOf(tick) + 4, tick.toFixed(digits), 'text-anchor="end" font-size="11" fill="#555"'),
    )
  }
  parts.push(text(x + 4, top - 10, p.unit, 'font-size="11" fill="#555"'))
  const slot = plotWidth / p.groups.length
  const bar = Math.min(48, slot / 3)
  for (const [index, group] of p.groups.entries()) {
    const center = left + slot * (index + 0.5)
    for (const [side, value, color] of [
      [-1, group.bare, BARE],
      [0, group.plugin, PLUGIN],
    ] as const) {
      const bx = center + side * bar
      parts.push(
        `<rect x="${bx.toFixed(1)}" y="${yOf(value).toFixed(1)}" width="${bar.toFixed(1)}" height="${(bottom - yOf(value)).toFixed(1)}" fill="${color}"/>`,
        text(bx + bar / 2, yOf(value) - 4, label(value), 'text-anchor="middle" font-size="11"'),
      )
    }
    parts.push(
      text(center, bottom + 18, group.label, 'text-anchor="middle" font-size="13"'),
      text(
        center,
        bottom + 36,
        `× ${group.ratio.toFixed(2)}`,
        'text-anchor="middle" font-size="12" fill="#555"',
      ),
    )
  }
  parts.push(`<line x1="${left}" x2="${left + plotWidth}" y1="${bottom}" y2="${bottom}" stroke="#333"/>`)
  return parts.join("\n")
}

const perSegment = (label: string, run: ArchiveRun): Group => ({
  label,
  bare: 1000 / run.bare.segmentsPerSecond,
  plugin: 1000 / run.plugin.segmentsPerSecond,
  ratio: run.ratio,
})

/** The chart of a report; sections that the report lacks are left out. */
export const chartSvg = (report: Report): string => {
  const archive = report.archive
  const backup = report.backupRestore
  const panels: Array<{ readonly panel: Panel; readonly weight: number }> = []
  if (archive !== undefined) {
    panels.push({
      weight: 2,
      panel: {
        title: `Archiving ${archive.segments} WAL segments of ${archive.segmentMiB} MiB`,
        subtitle: `${archive.repositories} repositories, sync calls interleaved, async in blocks`,
        unit: "ms per segment (mean)",
        groups: [
          perSegment("sync lz4", archive.sync.lz4),
          perSegment("sync gz", archive.sync.gz),
          perSegment("async lz4", archive.async.lz4),
          perSegment("async gz", archive.async.gz),
        ],
      },
    })
  }
  if (backup !== undefined) {
    panels.push({
      weight: 1,
      panel: {
        title: "Full backup and its restore",
        subtitle: backup.database,
        unit: "seconds",
        groups: [
          {
            label: "backup",
            bare: backup.backup.bareSeconds,
            plugin: backup.backup.pluginSeconds,
            ratio: backup.backup.ratio,
          },
          {
            label: "restore",
            bare: backup.restore.bareSeconds,
            plugin: backup.restore.pluginSeconds,
            ratio: backup.restore.ratio,
          },
        ],
      },
    })
  }
  const weights = panels.reduce((sum, p) => sum + p.weight, 0)
  let x = 10
  const body = panels.map(({ panel: p, weight }) => {
    const width = ((WIDTH - 20) * weight) / weights
    const svg = panel(p, x, 80, width - 10, HEIGHT - 120)
    x += width
    return svg
  })
  const machine = report.machine === undefined ? "" : `, ${report.machine.cpus} cores`
  const sidecar = report.sidecar
  const cli = report.cliStartup
  const footer = [
    sidecar === undefined
      ? ""
      : `sidecar ready in ${sidecar.readyMs.toFixed(0)} ms; RSS ${sidecar.rssReadyMiB.toFixed(0)} MiB at ready, ${sidecar.rssMiB.toFixed(0)} MiB after ${sidecar.archives} archives (+${sidecar.rssGrowthMiB.toFixed(1)} MiB over the last ${sidecar.archives - Math.floor(sidecar.archives / 2)})`,
    cli === undefined ? "" : `CLI client start-up: +${cli.startupMs.toFixed(0)} ms per archive_command`,
  ]
    .filter((line) => line !== "")
    .join(" · ")
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="${FONT}">`,
    `<title>${escapeXml("cnpg-plugin-pgbackrest bench: through the plugin vs bare pgBackRest")}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`,
    text(
      20,
      28,
      "cnpg-plugin-pgbackrest: through the plugin vs bare pgBackRest (lower is better)",
      'font-size="18" font-weight="bold"',
    ),
    text(
      20,
      48,
      `npm run bench, ${report.generatedAt ?? "undated"}${machine}; under each group: plugin / bare time`,
      'font-size="12" fill="#555"',
    ),
    `<rect x="${WIDTH - 300}" y="37" width="14" height="14" fill="${BARE}"/>`,
    text(WIDTH - 280, 49, "bare pgBackRest", 'font-size="13"'),
    `<rect x="${WIDTH - 160}" y="37" width="14" height="14" fill="${PLUGIN}"/>`,
    text(WIDTH - 140, 49, "through the plugin", 'font-size="13"'),
    ...body,
    text(20, HEIGHT - 16, footer, 'font-size="12" fill="#333"'),
    "</svg>",
    "",
  ].join("\n")
}
