import { Cache, Cause, Config, Duration, Effect, Exit, Option, type Redacted } from "effect"
import { InvalidRequest, NotFound, PermissionDenied } from "../domain/errors.js"
import { Kubernetes, type ReadError, type SecretValues } from "./kubernetes.js"

/** A `{ name, key }` reference to one value of a Secret in the Stanza's namespace. */
export interface SecretKeyRef {
  readonly name: string
  readonly key: string
}

/**
 * How long a Secret read is reused. A WAL is archived every few seconds and each needs the repository
 * credentials: without a cache every archive would be an API call. A rotated Secret is seen within this.
 */
export const SecretsCacheTtl = Config.duration("CNPG_PGBACKREST_SECRETS_CACHE_TTL").pipe(
  Config.withDefault(Duration.seconds(30)),
  Config.withDescription("How long Secret values are cached before being read again from Kubernetes"),
)

/**
 * An absent Secret is remembered only briefly (the user is probably creating it right now), and an API
 * outage not at all, so the next call asks again.
 */
export const SECRETS_MISSING_TTL = Duration.seconds(1)

const SECRETS_CACHE_CAPACITY = 256

const keySeparator = "/"

/** Resolves the Secret values a Stanza refers to, through a short-lived cache of Secret reads. */
export class Secrets extends Effect.Service<Secrets>()("cnpg-pgbackrest/Secrets", {
  effect: Effect.gen(function* () {
    const kubernetes = yield* Kubernetes
    const ttl = yield* SecretsCacheTtl

    // Keyed by "<namespace>/<name>": neither part may contain a slash.
    const cache = yield* Cache.makeWith({
      capacity: SECRETS_CACHE_CAPACITY,
      lookup: (key: string): Effect.Effect<SecretValues, ReadError> => {
        const separator = key.indexOf(keySeparator)
        return kubernetes.getSecret(key.slice(0, separator), key.slice(separator + 1))
      },
      timeToLive: (exit: Exit.Exit<SecretValues, ReadError>) => {
        if (Exit.isSuccess(exit)) {
          return ttl
        }
        const failure = Cause.failureOption(exit.cause).pipe(Option.map((error) => error._tag))
        return Option.contains(failure, "NotFound") || Option.contains(failure, "PermissionDenied")
          ? Duration.min(ttl, SECRETS_MISSING_TTL)
          : Duration.zero
      },
    })

    /**
     * The value of `ref` in `namespace`. `field` is the Stanza field that holds the reference
     * (`spec.stanzaConfiguration.s3Repositories[0].secretRef.accessKeyId`): errors name it, the Secret
     * and the key, and list the keys that exist, never a value.
     */
    const resolve = Effect.fn("Secrets.resolve")(function* (
      namespace: string,
      ref: SecretKeyRef,
      field: string,
    ) {
      const secret = `Secret ${namespace}/${ref.name}`
      const key = `${namespace}${keySeparator}${ref.name}`
      const values = yield* cache.get(key).pipe(
        // A zero TTL still serves the failure within the same millisecond: drop it so a retry asks again.
        Effect.tapErrorTag("Unavailable", () => cache.invalidate(key)),
        Effect.tapErrorTag("InvalidRequest", () => cache.invalidate(key)),
        Effect.catchTags({
          NotFound: (error) =>
            Effect.fail(
              new NotFound({
                what: secret,
                reason: `referenced by ${field}${error.reason === undefined ? "" : ` (${error.reason})`}`,
              }),
            ),
          PermissionDenied: (error) =>
            Effect.fail(
              new PermissionDenied({ action: error.action, reason: `${error.reason} (needed for ${field})` }),
            ),
        }),
      )
      // hasOwn: a key named "constructor" must not find Object's.
      const value: Redacted.Redacted<string> | undefined = Object.hasOwn(values, ref.key)
        ? values[ref.key]
        : undefined
      if (value === undefined) {
        const keys = Object.keys(values).sort()
        return yield* new InvalidRequest({
          field,
          reason: `${secret} has no key "${ref.key}" (its keys: ${keys.length === 0 ? "none" : keys.join(", ")})`,
        })
      }
      return value
    })

    /** Forgets a Secret, e.g. after pgBackRest reported the credentials it was given as rejected. */
    const invalidate = Effect.fn("Secrets.invalidate")((namespace: string, name: string) =>
      cache.invalidate(`${namespace}${keySeparator}${name}`),
    )

    return { resolve, invalidate }
  }),
}) {}
