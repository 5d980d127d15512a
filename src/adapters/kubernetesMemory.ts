import { Effect, Either, Option, Predicate, Schema } from "effect"
import { FailedPrecondition, InvalidRequest, NotFound } from "../domain/errors.js"
import {
  decodeProblem,
  describeObject,
  guessPlural,
  type KubernetesBackendShape,
  type ResourceRef,
  type WriteError,
} from "./kubernetesResource.js"

type JsonObject = { readonly [key: string]: unknown }

/** What every manifest must carry, as `kubectl apply` requires it. */
const Manifest = Schema.Struct({
  apiVersion: Schema.NonEmptyTrimmedString,
  kind: Schema.NonEmptyTrimmedString,
  metadata: Schema.Struct({
    name: Schema.NonEmptyTrimmedString,
    namespace: Schema.optional(Schema.NonEmptyTrimmedString),
    resourceVersion: Schema.optional(Schema.String),
  }),
})

/** One object to serve and where it came from (`stanza.yaml (document 2)`), for error messages. */
export interface SourcedObject {
  readonly source: string
  readonly object: unknown
}

const keyOf = (group: string, plural: string, namespace: string, name: string) =>
  `${group}|${plural}|${namespace}|${name}`

const refKey = (resource: ResourceRef, namespace: string, name: string) =>
  keyOf(resource.group, resource.plural, namespace, name)

/** RFC 7386 JSON merge patch: objects merge key by key, `null` deletes, anything else replaces. */
export const mergePatch = (target: unknown, patch: unknown): unknown => {
  if (!Predicate.isRecord(patch)) {
    return patch
  }
  const result: Record<string, unknown> = Predicate.isRecord(target) ? { ...target } : {}
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      Reflect.deleteProperty(result, key)
    } else {
      result[key] = mergePatch(result[key], value)
    }
  }
  return result
}

const metadataOf = (object: JsonObject): JsonObject =>
  Predicate.isRecord(object.metadata) ? object.metadata : {}

// Plain JSON, as the API server would return it: no Date objects from YAML, no shared references.
const toJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

const manifestError = (source: string, reason: string) => new InvalidRequest({ field: source, reason })

interface Entry {
  readonly resource: ResourceRef
  readonly namespace: string
  readonly name: string
  readonly object: JsonObject
}

/** Checks a manifest's envelope and places it: no namespace means `default`, as with kubectl. */
export const toEntry = (source: string, input: unknown): Either.Either<Entry, InvalidRequest> =>
  Schema.decodeUnknownEither(Manifest)(input).pipe(
    Either.mapLeft((error) => manifestError(source, decodeProblem(error))),
    Either.flatMap((manifest) => {
      const object = toJson(input)
      if (!Predicate.isRecord(object)) {
        return Either.left(manifestError(source, "not an object"))
      }
      const slash = manifest.apiVersion.lastIndexOf("/")
      const resource: ResourceRef = {
        group: slash === -1 ? "" : manifest.apiVersion.slice(0, slash),
        version: manifest.apiVersion.slice(slash + 1),
        plural: guessPlural(manifest.kind),
        kind: manifest.kind,
      }
      const namespace = manifest.metadata.namespace ?? "default"
      const metadata = {
        ...metadataOf(object),
        namespace,
        resourceVersion: manifest.metadata.resourceVersion ?? "1",
      }
      return Either.right({
        resource,
        namespace,
        name: manifest.metadata.name,
        object: { ...object, metadata },
      })
    }),
  )

export interface MemoryBackendOptions {
  /** Called after a status patch, with the merged status (local mode writes it to a file). */
  readonly onStatus?: (
    resource: ResourceRef,
    namespace: string,
    name: string,
    status: unknown,
  ) => Effect.Effect<void, WriteError>
}

/**
 * Serves objects from memory with the API server's rules that matter to the plugin: names are unique,
 * a replace with a stale resourceVersion is a conflict, a status patch only changes `.status`.
 * Lookups ignore the API version (a manifest's `v1` object serves any version).
 */
export const makeMemoryBackend = (
  objects: ReadonlyArray<SourcedObject>,
  options: MemoryBackendOptions = {},
): Either.Either<KubernetesBackendShape, InvalidRequest> => {
  const store = new Map<string, Entry & { readonly source: string }>()
  for (const { source, object } of objects) {
    const entry = toEntry(source, object)
    if (Either.isLeft(entry)) {
      return Either.left(entry.left)
    }
    const { resource, namespace, name } = entry.right
    const key = refKey(resource, namespace, name)
    const previous = store.get(key)
    if (previous !== undefined) {
      const what = describeObject(resource, namespace, name)
      return Either.left(manifestError(source, `${what} is already defined in ${previous.source}`))
    }
    store.set(key, { ...entry.right, source })
  }

  const find = (resource: ResourceRef, namespace: string, name: string) =>
    Effect.suspend(() => {
      const entry = store.get(refKey(resource, namespace, name))
      return entry === undefined
        ? Effect.fail(new NotFound({ what: describeObject(resource, namespace, name) }))
        : Effect.succeed(entry)
    })

  const write = (entry: Entry, source: string, resourceVersion: number) => {
    const object = {
      ...entry.object,
      metadata: { ...metadataOf(entry.object), resourceVersion: String(resourceVersion) },
    }
    store.set(refKey(entry.resource, entry.namespace, entry.name), { ...entry, object, source })
    return toJson(object)
  }

  const nextVersion = (entry: Entry) => Number(metadataOf(entry.object).resourceVersion ?? "0") + 1

  return Either.right({
    get: (resource, namespace, name) =>
      find(resource, namespace, name).pipe(Effect.map((entry) => toJson(entry.object))),
    create: (resource, namespace, body) =>
      Effect.gen(function* () {
        const entry = yield* toEntry("request body", mergePatch(body, { metadata: { namespace } }))
        const what = describeObject(resource, namespace, entry.name)
        if (store.has(refKey(resource, namespace, entry.name))) {
          return yield* new FailedPrecondition({ reason: `conflict: ${what} already exists` })
        }
        return write({ ...entry, resource }, "create", 1)
      }),
    replace: (resource, namespace, name, body) =>
      Effect.gen(function* () {
        const current = yield* find(resource, namespace, name)
        const entry = yield* toEntry("request body", mergePatch(body, { metadata: { namespace, name } }))
        const expected = metadataOf(current.object).resourceVersion
        const given = Schema.decodeUnknownOption(Manifest)(body).pipe(
          Option.flatMapNullable((manifest) => manifest.metadata.resourceVersion),
          Option.getOrUndefined,
        )
        if (given !== undefined && given !== expected) {
          const what = describeObject(resource, namespace, name)
          return yield* new FailedPrecondition({
            reason: `conflict: ${what} was modified (resourceVersion ${String(expected)}, not ${given})`,
          })
        }
        return write({ ...entry, resource }, "replace", nextVersion(current))
      }),
    patchStatus: (resource, namespace, name, status) =>
      Effect.gen(function* () {
        const current = yield* find(resource, namespace, name)
        const merged = mergePatch(current.object.status, toJson(status))
        const written = write(
          { ...current, object: { ...current.object, status: merged } },
          current.source,
          nextVersion(current),
        )
        if (options.onStatus !== undefined) {
          yield* options.onStatus(resource, namespace, name, merged)
        }
        return written
      }),
  })
}
