import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import type { TestProject } from "vitest/node"
import type { FaultRow } from "./report.js"

// Each fault test appends its row to one file; the table is printed once every fault has run, so it
// reads as one result whatever order the files ran in.
export default function setup(project: TestProject): () => void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cnpg-faults-"))
  const file = path.join(dir, "rows.jsonl")
  fs.writeFileSync(file, "")
  project.provide("faultReport", file)
  return () => {
    const rows = fs
      .readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as FaultRow)
    fs.rmSync(dir, { recursive: true, force: true })
    if (rows.length > 0) {
      process.stdout.write(`\n${formatTable(rows)}\n`)
    }
  }
}

export const formatTable = (rows: ReadonlyArray<FaultRow>): string => {
  const header = [
    "fault",
    "segments archived",
    "segments lost",
    "rows compared",
    "rows lost",
    "time to recover",
  ]
  const body = rows.map((row) => [
    row.fault,
    String(row.segmentsArchived),
    String(row.segmentsLost),
    String(row.rowsCompared),
    String(row.rowsLost),
    `${row.recoverSeconds.toFixed(1)} s`,
  ])
  const widths = header.map((title, i) =>
    Math.max(title.length, ...body.map((cells) => (cells[i] ?? "").length)),
  )
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join(" | ")} |`
  return [line(header), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n")
}
