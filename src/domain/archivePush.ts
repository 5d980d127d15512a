/**
 * What a finished `pgbackrest archive-push` said beyond its exit code.
 *
 * With `archive-push-queue-max` (the Stanza's `archive.pushQueueMax`) reached, pgBackRest deliberately
 * drops WAL to keep PostgreSQL's disk from filling: it exits 0 with `WARN: dropped WAL file '<name>'
 * because archive queue exceeded <size>`, and PostgreSQL counts the segment as archived although no
 * repository holds it. Point-in-time recovery across that segment is impossible from then on, so the
 * plugin must not let it pass as a quiet success.
 */
export const droppedSegments = (stderr: string): ReadonlyArray<string> =>
  [...stderr.matchAll(/dropped WAL file '([^']+)'/g)].flatMap((match) =>
    match[1] === undefined ? [] : [match[1]],
  )

/** Free space of the async spool when a push failed: the first thing to check when the worker cannot report. */
export interface SpoolState {
  readonly path: string
  readonly freeBytes: number
  readonly freeInodes: number
}

/**
 * The end of a failed asynchronous push's output, completed for the sidecar. pgBackRest points at its
 * async log file, which the sidecar never writes (file logging is off: the root filesystem is read-only,
 * logs go to stdout); what it cannot say is why its worker wrote no status file, and a full spool is the
 * common cause (nothing else reports it: the worker's own output is off).
 */
export const asyncFailureTail = (stderrTail: string, spool: SpoolState | undefined): string => {
  const withoutLogHint = stderrTail
    .split("\n")
    .filter((line) => !/HINT: check the log file/.test(line))
    .join("\n")
    .trimEnd()
  const state =
    spool === undefined
      ? "the spool could not be inspected"
      : `spool ${spool.path}: ${spool.freeBytes} bytes and ${spool.freeInodes} inodes free`
  return `${withoutLogHint}\n(asynchronous archiving; pgBackRest writes no log file in the sidecar; ${state})`
}
