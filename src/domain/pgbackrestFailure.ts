import { Schema } from "effect"

/**
 * What a failed pgBackRest command means for the caller, decided once, by the runner, from the exit
 * code and what pgBackRest printed. pgBackRest exits with its error code when one repository is
 * involved; with several, archive-push and archive-get try every repository and exit 104 ("command
 * encountered error(s)"), listing each repository's error as `repoN: [Name] ...`.
 * - `transient`: every repository involved was out of reach, answered 5xx, timed out, or a lock was
 *   held: the same command may succeed later.
 * - `stanza-missing`: a repository lost the stanza's info files.
 * - `archive-timeout`: an asynchronous archive-push or archive-get whose worker did not report in time.
 * - `absent`: archive-get read every repository and none holds the file.
 * - `repository-unreadable`: archive-get found the file nowhere, but a repository could not be read.
 * - `other`: anything else.
 */
export const FailureReason = Schema.Literal(
  "transient",
  "stanza-missing",
  "archive-timeout",
  "absent",
  "repository-unreadable",
  "other",
)
export type FailureReason = typeof FailureReason.Type

/** Cannot connect (49), the store answered with an error such as a 5xx (101), timeout (66), lock held (50). */
const TRANSIENT: Readonly<Record<number, string>> = {
  49: "HostConnectError",
  50: "LockAcquireError",
  66: "ProtocolTimeoutError",
  101: "ServiceError",
}

/** The stanza's info files are gone from a repository: 55 file missing, 103 no valid repository. */
const STANZA_MISSING_CODES: ReadonlySet<number> = new Set([55, 103])

const NO_VALID_REPOSITORY = 103

/** ArchiveTimeoutError: an asynchronous archive-push or archive-get whose worker did not report in time. */
const ARCHIVE_TIMEOUT = 82

// archive-get exits 1, printing nothing at the default log levels, when no repository holds the file
// (checked on pgBackRest 2.45; pgBackRest's own error codes start at 25).
const ARCHIVE_GET_MISSING = 1

// archive-get also exits 1 when a repository could not be read (a stopped S3 endpoint): pgBackRest
// 2.45 warns `WARN: repo1: [HostConnectError] ...` and reports the file missing if no other repository
// has it. The file may be in the unreadable repository, so that is not an answer of "absent".
const UNREADABLE_REPOSITORY = /^WARN: repo\d+: /m

const COMMAND_ERROR = 104

interface RepositoryError {
  readonly name: string
  readonly text: string
  /** The indented `SomeError: ...` lines under it: why an info file could not be loaded. */
  readonly causes: ReadonlyArray<string>
}

const repositoryErrors = (tail: string): ReadonlyArray<RepositoryError> => {
  const errors: Array<{ name: string; text: string; causes: Array<string> }> = []
  for (const line of tail.split("\n")) {
    const repository = /repo\d+: \[(\w+)\] (.*)$/.exec(line)
    if (repository !== null) {
      errors.push({ name: repository[1] ?? "", text: repository[2] ?? "", causes: [] })
      continue
    }
    const cause = /^\s+(\w+Error): /.exec(line)
    if (cause !== null) {
      errors[errors.length - 1]?.causes.push(cause[1] ?? "")
    }
  }
  return errors
}

const TRANSIENT_NAMES: ReadonlySet<string> = new Set(Object.values(TRANSIENT))

/**
 * A repository that could not be reached. pgBackRest 2.45 names the error itself when both loads of
 * archive.info failed alike (`[HostConnectError] unable to load info file ...`, then exit 103); a
 * wrapping type is read through its cause lines, and counts only if every cause is a connection or
 * service error. A CryptoError cause (a wrong passphrase reads the same) is never taken as transient.
 */
const unreachable = (error: RepositoryError): boolean =>
  TRANSIENT_NAMES.has(error.name) ||
  (error.causes.length > 0 && error.causes.every((cause) => TRANSIENT_NAMES.has(cause)))

/** What pgBackRest reported when it failed: its exit code and the end of its output. */
export interface FailureOutput {
  readonly exitCode: number
  readonly stderrTail: string
}

/** Called by the runner for every failed command; everyone else reads `PgBackRestFailed.reason`. */
export const classifyFailure = (error: FailureOutput): FailureReason => {
  if (error.exitCode === ARCHIVE_GET_MISSING) {
    return UNREADABLE_REPOSITORY.test(error.stderrTail) ? "repository-unreadable" : "absent"
  }
  if (error.exitCode === ARCHIVE_TIMEOUT) {
    return "archive-timeout"
  }
  if (error.exitCode in TRANSIENT) {
    return "transient"
  }
  const errors = repositoryErrors(error.stderrTail)
  // 103 "no valid repository" and 104 list each repository's error: none lost its stanza if every
  // one of them was merely out of reach.
  if (
    (error.exitCode === NO_VALID_REPOSITORY || error.exitCode === COMMAND_ERROR) &&
    errors.length > 0 &&
    errors.every(unreachable)
  ) {
    return "transient"
  }
  if (STANZA_MISSING_CODES.has(error.exitCode)) {
    return "stanza-missing"
  }
  if (
    error.exitCode === COMMAND_ERROR &&
    errors.some((item) => item.name === "FileMissingError" && item.text.includes("unable to load info file"))
  ) {
    return "stanza-missing"
  }
  return "other"
}
