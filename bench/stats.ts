// Small measuring helpers shared by the parts of `npm run bench`.
import * as fs from "node:fs"
import * as os from "node:os"
import { Effect } from "effect"
import type { CallSummary } from "./report.js"

export const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

/** A positive integer from the environment (the bench's knobs), or the default. */
export const knob = (name: string, fallback: number): number => {
  const raw = process.env[name]
  if (raw === undefined || raw === "") return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer, not ${raw}`)
  }
  return value
}

/** The value at quantile `p` (nearest rank) of the samples; 0 without samples. */
export const quantile = (values: ReadonlyArray<number>, p: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0
}

export const median = (values: ReadonlyArray<number>): number => quantile(values, 0.5)

export const sum = (values: ReadonlyArray<number>): number => values.reduce((a, b) => a + b, 0)

/** Segments per second over the summed call times, with the median and p95 of a call. */
export const summary = (perCall: ReadonlyArray<number>): CallSummary => {
  const totalMs = sum(perCall)
  return {
    segmentsPerSecond: totalMs > 0 ? (perCall.length * 1000) / totalMs : 0,
    medianMs: median(perCall),
    p95Ms: quantile(perCall, 0.95),
    totalMs,
  }
}

/** Runs the effect and appends its wall time (ms) to `into`. */
export const timeInto = <A, E, R>(effect: Effect.Effect<A, E, R>, into: Array<number>) =>
  Effect.gen(function* () {
    const started = performance.now()
    const value = yield* effect
    into.push(performance.now() - started)
    return value
  })

/** VmRSS of a live process, in MiB (0 when it is gone). */
export const rssMiB = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0") / 1024
  } catch {
    return 0
  }
}

export const machine = () => ({ cpus: os.availableParallelism(), cpuModel: os.cpus()[0]?.model ?? "unknown" })

export const fixed = (value: number, digits = 0) => value.toFixed(digits)
