import type { PgBackRestFailed } from "./errors.js"

/**
 * What a failed pgBackRest command means for the caller. pgBackRest exits with its error code when
 * one repository is involved; with several, archive-push and archive-get try every repository and
 * exit 104 ("command encountered error(s)"), listing each repository's error as `repoN: [Name] ...`.
 */
export type FailureKind = "transient" | "stanza-missing" | "other"

/** Cannot connect (49), the store answered with an error such as a 5xx (101), timeout (66), lock held (50). */
const TRANSIENT: Readonly<Record<number, string>> = {
  49: "HostConnectError",
  50: "LockAcquireError",
  66: "ProtocolTimeoutError",
  101: "ServiceError",
}

/** The stanza's info files are gone from a repository: 55 file missing, 103 no valid repository. */
const STANZA_MISSING_CODES: ReadonlySet<number> = new Set([55, 103])

const COMMAND_ERROR = 104

const repositoryErrors = (tail: string): ReadonlyArray<{ readonly name: string; readonly text: string }> =>
  [...tail.matchAll(/repo\d+: \[(\w+)\] ([^\n]*)/g)].map((match) => ({
    name: match[1] ?? "",
    text: match[2] ?? "",
  }))

export const classifyFailure = (error: PgBackRestFailed): FailureKind => {
  if (error.exitCode in TRANSIENT) {
    return "transient"
  }
  if (STANZA_MISSING_CODES.has(error.exitCode)) {
    return "stanza-missing"
  }
  if (error.exitCode === COMMAND_ERROR) {
    const errors = repositoryErrors(error.stderrTail)
    if (
      errors.some(
        (item) => item.name === "FileMissingError" && item.text.includes("unable to load info file"),
      )
    ) {
      return "stanza-missing"
    }
    const transient = new Set(Object.values(TRANSIENT))
    if (errors.length > 0 && errors.every((item) => transient.has(item.name))) {
      return "transient"
    }
  }
  return "other"
}
