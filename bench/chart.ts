// `npm run bench`, last part: draws bench/chart.svg from bench/report.json and converts it to
// bench/chart.png with rsvg-convert, installing Debian's librsvg2-bin first when it is missing.
import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Duration, Effect } from "effect"
import { exec, execOk } from "../test/rig/exec.js"
import { PROJECT_ROOT } from "../test/rig/paths.js"
import { chartSvg } from "./chartSvg.js"
import { readReport } from "./report.js"
import { say } from "./stats.js"

const SVG = path.join(PROJECT_ROOT, "bench", "chart.svg")
const PNG = path.join(PROJECT_ROOT, "bench", "chart.png")

const apt = (args: ReadonlyArray<string>) =>
  execOk(`apt-get ${args[0] ?? ""}`, "apt-get", args, {
    env: { DEBIAN_FRONTEND: "noninteractive" },
    timeout: Duration.minutes(10),
  })

/** rsvg-convert, installed with apt-get (as root) the first time, like scripts/install-deps.sh does. */
const ensureRsvgConvert = Effect.gen(function* () {
  const found = yield* exec("which rsvg-convert", "which", ["rsvg-convert"])
  if (found.exitCode === 0) return
  yield* say("bench: installing librsvg2-bin for rsvg-convert")
  if (process.getuid?.() !== 0) {
    return yield* Effect.fail(new Error("rsvg-convert is missing and only root can install librsvg2-bin"))
  }
  yield* apt(["update", "-qq"])
  yield* apt(["install", "-y", "-qq", "--no-install-recommends", "librsvg2-bin"])
})

const program = Effect.gen(function* () {
  const report = yield* readReport()
  yield* Effect.try({
    try: () => fs.writeFileSync(SVG, chartSvg(report)),
    catch: (error) => new Error(`cannot write ${SVG}: ${String(error)}`),
  })
  yield* ensureRsvgConvert
  yield* execOk("rsvg-convert", "rsvg-convert", ["--background-color=white", "-o", PNG, SVG])
  yield* say(`wrote ${path.relative(PROJECT_ROOT, SVG)} and ${path.relative(PROJECT_ROOT, PNG)}`)
})

NodeRuntime.runMain(program.pipe(Effect.provide(NodeContext.layer)))
