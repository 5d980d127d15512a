import { Either, Schema } from "effect"
import { decodeWithPath } from "./decode.js"
import type { InvalidRequest } from "./errors.js"

/**
 * The `Stanza` custom resource (`pgbackrest.dalibo.com/v1`): the pgBackRest configuration a Cluster
 * points at with its `stanzaRef` parameter. Field names are those of the documented manifests, so the
 * documentation's examples decode unchanged.
 */

const NonEmpty = Schema.String.pipe(Schema.minLength(1, { message: () => "must not be empty" }))

/** C0 controls (below U+0020: newline, carriage return, tab, NUL, ...) and DEL. */
const hasControlCharacter = (value: string): boolean =>
  Array.from(value).some((char) => char < " " || char === "\u007f")

/**
 * A free-form string that reaches pgBackRest (as a `PGBACKREST_*` variable) or a message we log. A
 * newline there splits the S3 request pgBackRest signs (the bucket and region go into it) or a log
 * line; a NUL makes Node's spawn throw, so the call would fail as an internal error instead of naming
 * the field. The CRD's patterns refuse the same characters (`[^\x00-\x1F\x7F]`).
 */
const Text = Schema.String.pipe(
  Schema.filter((value) => !hasControlCharacter(value), {
    message: () => "must not contain control characters such as a newline",
  }),
)

const NonEmptyText = Text.pipe(Schema.minLength(1, { message: () => "must not be empty" }))

const Count = (minimum: number) =>
  Schema.Int.pipe(
    Schema.greaterThanOrEqualTo(minimum, { message: () => `must be an integer from ${minimum} to 9999999` }),
    Schema.lessThanOrEqualTo(9999999, { message: () => `must be an integer from ${minimum} to 9999999` }),
  )

/** A key of a Secret in the Stanza's namespace. */
export const SecretKeySelector = Schema.Struct({ name: NonEmptyText, key: NonEmptyText })
export type SecretKeySelector = typeof SecretKeySelector.Type

/** pgBackRest `repo-retention-*`; `history` included (an earlier plugin silently dropped it). */
export const RetentionPolicy = Schema.Struct({
  full: Schema.optional(Count(1)),
  fullType: Schema.optional(Schema.Literal("count", "time")),
  diff: Schema.optional(Count(1)),
  archive: Schema.optional(Count(1)),
  archiveType: Schema.optional(Schema.Literal("full", "diff", "incr")),
  history: Schema.optional(Count(0)),
})
export type RetentionPolicy = typeof RetentionPolicy.Type

export const S3SecretRef = Schema.Struct({
  accessKeyId: Schema.optional(SecretKeySelector),
  secretAccessKey: Schema.optional(SecretKeySelector),
}).pipe(
  Schema.filter((ref) =>
    (ref.accessKeyId === undefined) === (ref.secretAccessKey === undefined)
      ? undefined
      : {
          path: [ref.accessKeyId === undefined ? "accessKeyId" : "secretAccessKey"],
          message: "accessKeyId and secretAccessKey go together: give both or neither",
        },
  ),
)

export const CipherConfig = Schema.Struct({
  encryptionPass: SecretKeySelector,
  type: Schema.optionalWith(Schema.Literal("aes-256-cbc"), { default: () => "aes-256-cbc" as const }),
})

/** `host`, `host:port`, or `https://host[:port]`; pgBackRest speaks HTTPS only. */
const Endpoint = NonEmpty.pipe(
  Schema.filter(
    (value) =>
      /^(https:\/\/)?[A-Za-z0-9.-]+(:[0-9]{1,5})?\/?$/.test(value) ||
      /^(https:\/\/)?\[[0-9a-fA-F:.]+\](:[0-9]{1,5})?\/?$/.test(value),
    {
      message: () =>
        "must be a host name with an optional port (https:// allowed, http:// is not supported by pgBackRest)",
    },
  ),
)

const RepoPath = NonEmptyText.pipe(
  Schema.filter((value) => value.startsWith("/") && !value.split("/").includes(".."), {
    message: () => "must be an absolute path without '..'",
  }),
)

export const S3Repository = Schema.Struct({
  bucket: NonEmptyText,
  endpoint: Endpoint,
  region: NonEmptyText,
  repoPath: RepoPath,
  uriStyle: Schema.optional(Schema.Literal("host", "path")),
  // Default on: TLS checks are never turned off unless the manifest says so.
  verifyTLS: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  retentionPolicy: Schema.optional(RetentionPolicy),
  secretRef: Schema.optional(S3SecretRef),
  cipherConfig: Schema.optional(CipherConfig),
  /** A CA bundle (PEM) in a Secret, for endpoints whose certificate a private CA signed. */
  endpointCA: Schema.optional(SecretKeySelector),
})
export type S3Repository = typeof S3Repository.Type

/**
 * A repository on a filesystem the sidecar mounts (NFS, a dedicated volume). Not in the original
 * plugin's API: numbered after every S3 repository.
 */
export const PosixRepository = Schema.Struct({
  repoPath: RepoPath,
  retentionPolicy: Schema.optional(RetentionPolicy),
  cipherConfig: Schema.optional(CipherConfig),
})
export type PosixRepository = typeof PosixRepository.Type

const Size = Schema.String.pipe(
  Schema.filter((value) => /^[0-9]+ ?(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB|PB|PiB)?$/.test(value), {
    message: () => "must be a size such as 512MiB or 1GiB",
  }),
)

export const ArchiveOptions = Schema.Struct({
  async: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  pushQueueMax: Schema.optional(Size),
  getQueueMax: Schema.optional(Size),
})

export const CompressConfig = Schema.Struct({
  type: Schema.optional(Schema.Literal("bz2", "gz", "lz4", "zst")),
  level: Schema.optional(
    Schema.Int.pipe(Schema.between(-5, 22, { message: () => "must be an integer from -5 to 22" })),
  ),
})

const StanzaName = NonEmpty.pipe(
  Schema.filter((value) => /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(value), {
    message: () => "must be 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit",
  }),
)

const CustomEnv = Schema.Record({ key: Schema.String, value: Text }).pipe(
  Schema.filter((variables) => {
    const bad = Object.keys(variables).find((name) => !/^PGBACKREST_[A-Z0-9_]+$/.test(name))
    return bad === undefined
      ? undefined
      : { path: [bad], message: "custom variables must be named PGBACKREST_<OPTION>" }
  }),
)

export const StanzaConfiguration = Schema.Struct({
  name: StanzaName,
  s3Repositories: Schema.optionalWith(Schema.Array(S3Repository), { default: () => [] }),
  posixRepositories: Schema.optionalWith(Schema.Array(PosixRepository), { default: () => [] }),
  azureRepositories: Schema.optional(
    Schema.Array(Schema.Unknown).pipe(
      Schema.filter((repositories) => repositories.length === 0, {
        message: () => "Azure repositories are not supported yet by this plugin",
      }),
    ),
  ),
  archive: Schema.optional(ArchiveOptions),
  processMax: Schema.optional(
    Schema.Int.pipe(Schema.between(1, 999, { message: () => "must be an integer from 1 to 999" })),
  ),
  compressConfig: Schema.optional(CompressConfig),
  startFast: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  delta: Schema.optionalWith(Schema.Boolean, { default: () => true }),
  logLevel: Schema.optional(Schema.Literal("off", "error", "warn", "info", "detail", "debug", "trace")),
  customEnvVar: Schema.optional(CustomEnv),
}).pipe(
  Schema.filter((config) =>
    config.s3Repositories.length + config.posixRepositories.length > 0
      ? undefined
      : { path: ["s3Repositories"], message: "at least one repository is required" },
  ),
)
export type StanzaConfiguration = typeof StanzaConfiguration.Type

export const StanzaSpec = Schema.Struct({ stanzaConfiguration: StanzaConfiguration })

/** Object metadata, read leniently: the API server adds many fields we do not use. */
export const ObjectMeta = Schema.Struct({
  name: NonEmpty,
  namespace: Schema.optional(Schema.String),
  uid: Schema.optional(Schema.String),
  generation: Schema.optional(Schema.Number),
  resourceVersion: Schema.optional(Schema.String),
})

const StanzaEnvelope = Schema.Struct({
  apiVersion: Schema.optional(Schema.Literal("pgbackrest.dalibo.com/v1")),
  kind: Schema.optional(Schema.Literal("Stanza")),
  metadata: ObjectMeta,
  spec: Schema.Unknown,
})

export interface Stanza {
  readonly metadata: typeof ObjectMeta.Type
  readonly spec: typeof StanzaSpec.Type
}

const decodeEnvelope = decodeWithPath(StanzaEnvelope, "", { strict: false })
const decodeSpec = decodeWithPath(StanzaSpec, "spec", { strict: true })

/**
 * Decodes a Stanza object as read from the API or a manifest. The metadata is read leniently; the spec
 * strictly, so an unknown or misspelt field is an error naming it.
 */
export const decodeStanza = (input: unknown): Either.Either<Stanza, InvalidRequest> =>
  Either.gen(function* () {
    const envelope = yield* decodeEnvelope(input)
    const spec = yield* decodeSpec(envelope.spec)
    return { metadata: envelope.metadata, spec }
  })

/** One repository with the number pgBackRest knows it by, and the Stanza field that defines it. */
export type Repository =
  | { readonly number: number; readonly field: string; readonly kind: "s3"; readonly spec: S3Repository }
  | {
      readonly number: number
      readonly field: string
      readonly kind: "posix"
      readonly spec: PosixRepository
    }

/**
 * Repositories in pgBackRest's numbering: from 1, in list order, S3 repositories first, then posix
 * ones (`selectedRepository: "1"` is the first S3 repository).
 */
export const repositories = (config: StanzaConfiguration): ReadonlyArray<Repository> => {
  const base = "spec.stanzaConfiguration"
  const s3 = config.s3Repositories.map(
    (spec, index): Repository => ({
      number: index + 1,
      field: `${base}.s3Repositories[${index}]`,
      kind: "s3",
      spec,
    }),
  )
  const posix = config.posixRepositories.map(
    (spec, index): Repository => ({
      number: s3.length + index + 1,
      field: `${base}.posixRepositories[${index}]`,
      kind: "posix",
      spec,
    }),
  )
  return [...s3, ...posix]
}
