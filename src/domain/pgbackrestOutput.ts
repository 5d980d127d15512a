import { Option, Schema } from "effect"

/** What replaces a secret value in anything the plugin reports. */
export const REDACTED = "<redacted>"

/**
 * A whole output stream kept in memory, up to `limit` bytes (`info --output=json` of a large repository
 * is megabytes; anything past the limit is a runaway, not an answer).
 */
export class ByteCollector {
  private readonly chunks: Array<Uint8Array> = []
  private size = 0
  constructor(readonly limit: number) {}

  /** Keeps the chunk; false (and nothing kept) when it would pass the limit. */
  push(chunk: Uint8Array): boolean {
    if (this.size + chunk.length > this.limit) {
      return false
    }
    this.chunks.push(chunk)
    this.size += chunk.length
    return true
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.chunks, this.size)
  }
}

/** The last `limit` bytes of a stream: memory stays bounded whatever the stream's size. */
export class ByteTail {
  private chunks: Array<Uint8Array> = []
  private size = 0
  private dropped = false
  constructor(readonly limit: number) {}

  push(chunk: Uint8Array): void {
    if (chunk.length >= this.limit) {
      this.dropped ||= this.size > 0 || chunk.length > this.limit
      // A copy, so the kept tail does not pin the whole chunk's buffer.
      this.chunks = [new Uint8Array(chunk.subarray(chunk.length - this.limit))]
      this.size = this.limit
      return
    }
    this.chunks.push(chunk)
    this.size += chunk.length
    let first = this.chunks[0]
    while (first !== undefined && this.size - first.length >= this.limit) {
      this.chunks.shift()
      this.size -= first.length
      this.dropped = true
      first = this.chunks[0]
    }
    if (first !== undefined && this.size > this.limit) {
      this.chunks[0] = new Uint8Array(first.subarray(this.size - this.limit))
      this.size = this.limit
      this.dropped = true
    }
  }

  get isEmpty(): boolean {
    return this.size === 0
  }

  /** True when bytes before the kept tail were dropped. */
  get truncated(): boolean {
    return this.dropped
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.chunks, this.size)
  }
}

/**
 * Replaces every occurrence of a secret by `<redacted>`. The first `unsafePrefix` characters are dropped
 * unless they belong to a whole occurrence: when a tail window starts inside a secret, that fragment
 * cannot be recognised, so it must not be shown.
 */
export const redact = (text: string, secrets: ReadonlyArray<string>, unsafePrefix = 0): string => {
  const hits: Array<readonly [number, number]> = []
  for (const secret of secrets) {
    if (secret.length === 0) continue
    for (let at = text.indexOf(secret); at !== -1; at = text.indexOf(secret, at + 1)) {
      hits.push([at, at + secret.length])
    }
  }
  hits.sort((a, b) => a[0] - b[0])
  let out = ""
  let cursor = 0
  for (const [start, end] of hits) {
    if (end <= cursor) continue
    if (start >= cursor) {
      out += text.slice(Math.max(cursor, unsafePrefix), Math.max(start, unsafePrefix)) + REDACTED
    }
    cursor = end
  }
  return out + text.slice(Math.max(cursor, unsafePrefix))
}

export interface TailLimits {
  readonly maxChars: number
  readonly maxLines: number
}

/**
 * The end of an output (its last lines, at most `maxChars`) with secrets redacted. `truncated` says the
 * bytes are the tail of a longer output: a secret cut by the window's start is then dropped too.
 */
export const renderTail = (
  bytes: Uint8Array,
  truncated: boolean,
  secrets: ReadonlyArray<string>,
  limits: TailLimits,
): string => {
  const text = new TextDecoder().decode(bytes)
  const longest = secrets.reduce((max, secret) => Math.max(max, Buffer.byteLength(secret)), 0)
  const lines = redact(text, secrets, truncated ? longest : 0)
    .trimEnd()
    .split("\n")
    .slice(-limits.maxLines)
    .join("\n")
  return lines.length > limits.maxChars ? lines.slice(lines.length - limits.maxChars) : lines
}

/** What a failed command reports: the last lines of its output, at most 8 KiB. */
export const TAIL: TailLimits = { maxChars: 8 * 1024, maxLines: 40 }

/**
 * The bytes of output to keep for `TAIL`: longer by the longest secret, so that a secret cut by the
 * window's start is recognised as cut (and dropped by `renderTail`).
 */
export const tailWindow = (secrets: ReadonlyArray<string>): number =>
  TAIL.maxChars + secrets.reduce((max, secret) => Math.max(max, Buffer.byteLength(secret)), 0)

/**
 * The end of a failed command's stderr; of its stdout when stderr is empty (with log-level-stderr=off
 * pgBackRest prints its errors on stdout only).
 */
export const failureTail = (stdout: Uint8Array, stderr: ByteTail, secrets: ReadonlyArray<string>): string => {
  if (!stderr.isEmpty) return renderTail(stderr.bytes(), stderr.truncated, secrets, TAIL)
  const window = tailWindow(secrets)
  return renderTail(
    stdout.subarray(Math.max(0, stdout.length - window)),
    stdout.length > window,
    secrets,
    TAIL,
  )
}

/** The version `pgbackrest version` prints (`pgBackRest 2.45`, `pgBackRest 2.54.2`, `pgBackRest 2.56.0dev`). */
export interface PgBackRestVersion {
  readonly major: number
  readonly minor: number
  readonly patch: number
  /** As printed, e.g. `2.45`. */
  readonly text: string
}

export const parseVersion = (stdout: string): Option.Option<PgBackRestVersion> => {
  const match = /^pgBackRest (\d+)\.(\d+)(?:\.(\d+))?(\S*)\s*$/.exec(stdout.trim())
  if (match === null) return Option.none()
  const [, major = "", minor = "", patch, suffix = ""] = match
  return Option.some({
    major: Number(major),
    minor: Number(minor),
    patch: patch === undefined ? 0 : Number(patch),
    text: `${major}.${minor}${patch === undefined ? "" : `.${patch}`}${suffix}`,
  })
}

// `info --output=json` prints 64-bit integers (`"system-id":7712159289193794070`) that JSON.parse would
// round: such integers are kept as their exact decimal text (a string) instead.
const keepLargeIntegers = (_key: string, value: unknown, context?: { readonly source?: string }): unknown =>
  typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value) && context?.source
    ? context.source
    : value

/**
 * The stdout of `pgbackrest info --output=json`, parsed but not yet checked; integers beyond 2^53
 * (`system-id`) are decimal strings.
 */
export const InfoJson = Schema.parseJson(Schema.Unknown, { reviver: keepLargeIntegers })
