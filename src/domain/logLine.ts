import { Cause, HashMap, LogLevel } from "effect"

/** Log levels accepted by `--log-level`; CloudNativePG spells warn as `warning`. */
export const LOG_LEVELS = ["error", "warning", "warn", "info", "debug", "trace"] as const
export type LogLevelName = (typeof LOG_LEVELS)[number]

/** Effect's log level for a `--log-level` value. */
export const effectLogLevel = (name: LogLevelName): LogLevel.LogLevel => {
  switch (name) {
    case "error":
      return LogLevel.Error
    case "warning":
    case "warn":
      return LogLevel.Warning
    case "info":
      return LogLevel.Info
    case "debug":
      return LogLevel.Debug
    case "trace":
      return LogLevel.Trace
  }
}

export interface LogInput {
  readonly level: LogLevel.LogLevel
  readonly date: Date
  readonly message: unknown
  readonly annotations: HashMap.HashMap<string, unknown>
  readonly cause: Cause.Cause<unknown>
}

const text = (part: unknown): string =>
  typeof part === "string" ? part : (JSON.stringify(part) ?? String(part))

/**
 * One structured JSON log line (no trailing newline): `level`, `ts`, `logger`, `msg`, then the log
 * annotations as fields, and `error` with the rendered cause when there is one. Kubernetes log
 * collectors parse one JSON object per line, the same shape CloudNativePG's own components write.
 */
export const formatLogLine = (input: LogInput): string => {
  const parts = Array.isArray(input.message) ? input.message : [input.message]
  const record: Record<string, unknown> = {
    level: input.level.label.toLowerCase(),
    ts: input.date.toISOString(),
    logger: "pgbackrest-plugin",
    msg: parts.map(text).join(" "),
  }
  for (const [key, value] of HashMap.toEntries(input.annotations)) {
    record[key] = value
  }
  if (!Cause.isEmpty(input.cause)) {
    record.error = Cause.pretty(input.cause, { renderErrorCause: true })
  }
  return JSON.stringify(record)
}
