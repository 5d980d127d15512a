import * as crypto from "node:crypto"
import * as path from "node:path"
import { FileSystem } from "@effect/platform"
import { Cache, Data, Duration, Effect, Exit, Redacted } from "effect"
import { Kubernetes, type ReadError } from "../adapters/kubernetes.js"
import { Secrets } from "../adapters/secrets.js"
import { InvalidRequest, Unavailable } from "../domain/errors.js"
import { repositories as allRepositories, decodeStanza, type Stanza } from "../domain/stanza.js"
import {
  type PgBackRestEnv,
  type RepositorySecrets,
  secretUses,
  stanzaEnv,
  stanzaFingerprint,
} from "../domain/stanzaEnv.js"
import { InstanceSettings } from "./settings.js"

/** A Stanza made ready for pgBackRest: its decoded spec, the environment, and its layout fingerprint. */
export interface ResolvedStanza {
  readonly namespace: string
  readonly name: string
  readonly stanza: Stanza
  readonly env: PgBackRestEnv
  readonly fingerprint: string
}

/**
 * A WAL segment is archived every few seconds at most: reuse a resolution for this long, so archiving
 * does not read the Stanza and its Secrets from the API for every segment. Edits show up within it.
 */
export const STANZA_CACHE_TTL = Duration.seconds(10)

/**
 * Turns a `stanzaRef` into everything pgBackRest needs: reads and validates the Stanza, resolves its
 * Secrets, writes CA bundles to the scratch directory, and builds the `PGBACKREST_*` environment.
 */
export class StanzaResolver extends Effect.Service<StanzaResolver>()("cnpg-pgbackrest/StanzaResolver", {
  effect: Effect.gen(function* () {
    const kubernetes = yield* Kubernetes
    const secrets = yield* Secrets
    const settings = yield* InstanceSettings
    const fs = yield* FileSystem.FileSystem

    // Named after its content: concurrent resolutions write the same bytes to the same file, each
    // through its own temporary file (a shared one is renamed away under the second writer: ENOENT).
    const writeCa = (pem: Redacted.Redacted<string>) =>
      Effect.gen(function* () {
        const content = Redacted.value(pem)
        const digest = crypto.createHash("sha256").update(content).digest("hex").slice(0, 16)
        const dir = path.join(settings.runDir, "ca")
        const file = path.join(dir, `${digest}.pem`)
        const temporary = `${file}.${process.pid}.${crypto.randomUUID()}.tmp`
        yield* fs.makeDirectory(dir, { recursive: true })
        yield* fs.writeFileString(temporary, content, { mode: 0o600 })
        yield* fs.rename(temporary, file)
        return file
      }).pipe(
        Effect.mapError((error) => new Unavailable({ what: "scratch directory", reason: error.message })),
      )

    const resolveNow = (namespace: string, name: string) =>
      Effect.gen(function* () {
        const raw = yield* kubernetes.getStanza(namespace, name)
        const stanza = yield* decodeStanza(raw).pipe(
          Effect.mapError(
            (error) =>
              new InvalidRequest({
                field: `Stanza ${namespace}/${name} ${error.field}`,
                reason: error.reason,
              }),
          ),
        )
        const config = stanza.spec.stanzaConfiguration
        const repositories: Array<RepositorySecrets> = allRepositories(config).map(() => ({}))
        for (const use of secretUses(config)) {
          const value = yield* secrets.resolve(namespace, use.ref, `Stanza ${namespace}/${name} ${use.field}`)
          const index = use.repository - 1
          const current = repositories[index] ?? {}
          repositories[index] =
            use.purpose === "endpointCA"
              ? { ...current, caFile: yield* writeCa(value) }
              : { ...current, [use.purpose]: value }
        }
        const env = stanzaEnv(config, repositories, {
          pgData: settings.pgData,
          pgSocketDir: settings.pgHost,
          pgPort: settings.pgPort,
          lockPath: path.join(settings.runDir, "lock"),
          spoolPath: settings.spoolPath,
        })
        return {
          namespace,
          name,
          stanza,
          env,
          fingerprint: stanzaFingerprint(config),
        } satisfies ResolvedStanza
      })

    // Data.tuple: keys compare by value, not by reference.
    const cache = yield* Cache.makeWith({
      capacity: 64,
      lookup: (key: readonly [string, string]) => resolveNow(key[0], key[1]),
      timeToLive: (exit: Exit.Exit<ResolvedStanza, ReadError>) =>
        Exit.isSuccess(exit) ? STANZA_CACHE_TTL : Duration.zero,
    })

    return {
      resolve: Effect.fn("StanzaResolver.resolve")(function* (namespace: string, name: string) {
        const key = Data.tuple(namespace, name)
        // A zero TTL still serves the failure within the same millisecond: drop it so a retry asks again.
        return yield* cache.get(key).pipe(Effect.tapError(() => cache.invalidate(key)))
      }),
      /** Forgets a resolution, e.g. after pgBackRest rejected what it was given. */
      invalidate: (namespace: string, name: string) => cache.invalidate(Data.tuple(namespace, name)),
    }
  }),
}) {}
