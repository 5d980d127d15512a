import { Layer, Logger } from "effect"
import type { LogLevelName } from "../domain/logLine.js"
import { effectLogLevel, formatLogLine } from "../domain/logLine.js"

/**
 * JSON-lines logging at the level chosen by `--log-level`. Servers log to stdout (what `kubectl logs`
 * shows); short-lived commands (healthcheck, client) log to stderr so their stdout stays theirs.
 */
export const LoggingLive = (
  level: LogLevelName,
  sink: "stdout" | "stderr" = "stdout",
): Layer.Layer<never> => {
  const stream = sink === "stdout" ? process.stdout : process.stderr
  const logger = Logger.make(({ logLevel, date, message, annotations, cause }) => {
    stream.write(`${formatLogLine({ level: logLevel, date, message, annotations, cause })}\n`)
  })
  return Layer.merge(
    Logger.replace(Logger.defaultLogger, logger),
    Logger.minimumLogLevel(effectLogLevel(level)),
  )
}
