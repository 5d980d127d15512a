import { Either, ParseResult, Schema } from "effect"
import { InvalidRequest } from "./errors.js"

/** A JSON document from a request's bytes field (`cluster_definition`, ...); the error names the field. */
export const parseJsonBytes = (bytes: Uint8Array, field: string): Either.Either<unknown, InvalidRequest> =>
  Either.try({
    try: (): unknown => JSON.parse(new TextDecoder().decode(bytes)),
    catch: () => new InvalidRequest({ field, reason: "is not valid JSON" }),
  })

/** `spec.s3Repositories[0].bucket` from Effect's issue path. */
export const fieldPath = (prefix: string, path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) =>
      typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`,
    prefix,
  )

/**
 * Decodes outside data (a manifest, a request parameter map) and turns the first problem into an
 * `InvalidRequest` that names the field, e.g. `spec.stanzaConfiguration.s3Repositories[0].bucket:
 * is missing`. Unknown fields are rejected where `strict` is set: a typo such as `verifyTls` must not
 * silently fall back to a default.
 */
export const decodeWithPath =
  <A, I>(schema: Schema.Schema<A, I>, prefix: string, options: { readonly strict: boolean }) =>
  (input: unknown): Either.Either<A, InvalidRequest> => {
    try {
      return decodeOrExplain(schema, prefix, options, input)
    } catch (error) {
      // JSON nested a few thousand levels deep overflows the stack in Schema's recursive decoding or
      // error formatting: a refusal of the input, not a crash of the call.
      if (error instanceof RangeError) {
        return Either.left(
          new InvalidRequest({ field: prefix === "" ? "(root)" : prefix, reason: "is nested too deeply" }),
        )
      }
      throw error
    }
  }

const decodeOrExplain = <A, I>(
  schema: Schema.Schema<A, I>,
  prefix: string,
  options: { readonly strict: boolean },
  input: unknown,
): Either.Either<A, InvalidRequest> =>
  Schema.decodeUnknownEither(schema, {
    errors: "all",
    onExcessProperty: options.strict ? "error" : "ignore",
  })(input).pipe(
    Either.mapLeft((error) => {
      // An optional field's union adds "Expected undefined" beside the real problem: drop that noise,
      // and prefer a value that fails its own check over an unknown field reported beside it.
      const issues = ParseResult.ArrayFormatter.formatErrorSync(error).filter(
        (issue, _, all) => !(issue.message.startsWith("Expected undefined, actual") && all.length > 1),
      )
      const first = issues.find((issue) => issue._tag !== "Unexpected") ?? issues[0]
      const field = first === undefined ? prefix : fieldPath(prefix, first.path)
      const reason =
        first === undefined
          ? error.message
          : first._tag === "Unexpected"
            ? first.message
                .replace(/^is unexpected, expected:/, "unknown field; expected one of")
                .replaceAll('"', "")
            : first.message
      const more =
        issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : ""
      return new InvalidRequest({ field: field === "" ? "(root)" : field, reason: `${reason}${more}` })
    }),
  )
