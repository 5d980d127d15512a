import { assert, describe, it } from "@effect/vitest"
import { Cause, HashMap, LogLevel } from "effect"
import { effectLogLevel, formatLogLine } from "../../src/domain/logLine.js"

describe("formatLogLine", () => {
  const date = new Date("2026-11-25T10:00:00.000Z")

  it("writes one JSON object with level, ts, logger, msg and the annotations", () => {
    const line = formatLogLine({
      level: LogLevel.Info,
      date,
      message: ["archived", 3, "segments"],
      annotations: HashMap.make(["segment", "000000010000000000000003"], ["rpc", "WAL/Archive"]),
      cause: Cause.empty,
    })
    assert.notInclude(line, "\n")
    assert.deepStrictEqual(JSON.parse(line), {
      level: "info",
      ts: "2026-11-25T10:00:00.000Z",
      logger: "pgbackrest-plugin",
      msg: "archived 3 segments",
      segment: "000000010000000000000003",
      rpc: "WAL/Archive",
    })
  })

  it("adds the rendered cause as error", () => {
    const line = formatLogLine({
      level: LogLevel.Error,
      date,
      message: "call failed",
      annotations: HashMap.empty(),
      cause: Cause.fail(new Error("boom")),
    })
    const record = JSON.parse(line)
    assert.strictEqual(record.level, "error")
    assert.include(record.error, "boom")
  })

  it("maps --log-level names to Effect levels, warning and warn alike", () => {
    assert.strictEqual(effectLogLevel("warning"), LogLevel.Warning)
    assert.strictEqual(effectLogLevel("warn"), LogLevel.Warning)
    assert.strictEqual(effectLogLevel("trace"), LogLevel.Trace)
    assert.strictEqual(effectLogLevel("error"), LogLevel.Error)
  })
})
