import * as fs from "node:fs"
import { inject } from "vitest"

/** One row of the fault table that `npm run test:faults` prints at the end. */
export interface FaultRow {
  readonly fault: string
  /** Segments PostgreSQL produced during the run that are in every repository afterwards. */
  readonly segmentsArchived: number
  /** Segments PostgreSQL produced that are missing from a repository afterwards (must be 0). */
  readonly segmentsLost: number
  /** Rows the load wrote, each compared with the cluster restored to latest. */
  readonly rowsCompared: number
  /** Rows of the source missing or different in the cluster restored to latest (must be 0). */
  readonly rowsLost: number
  /** From the end of the fault to the first segment archived (or backup succeeding) after it. */
  readonly recoverSeconds: number
}

declare module "vitest" {
  export interface ProvidedContext {
    faultReport: string
  }
}

/** Appends a row for the table; the project's global teardown prints them all. */
export const recordFault = (row: FaultRow): void => {
  fs.appendFileSync(inject("faultReport"), `${JSON.stringify(row)}\n`)
}
