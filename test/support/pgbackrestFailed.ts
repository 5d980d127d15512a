import { PgBackRestFailed } from "../../src/domain/errors.js"
import { classifyFailure } from "../../src/domain/pgbackrestFailure.js"

/** A failure as the runner builds it from what pgBackRest printed: classified once, on construction. */
export const pgbackrestFailed = (command: string, exitCode: number, stderrTail: string): PgBackRestFailed =>
  new PgBackRestFailed({ command, exitCode, stderrTail, reason: classifyFailure({ exitCode, stderrTail }) })
