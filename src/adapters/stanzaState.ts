import * as path from "node:path"
import { FileSystem } from "@effect/platform"
import { Clock, Context, Effect, Either, Layer, Ref, Schema } from "effect"

/** Where the record of initialised stanzas lives: on the instance's persistent volume, not in memory. */
export class StanzaStateSettings extends Context.Tag("cnpg-pgbackrest/StanzaStateSettings")<
  StanzaStateSettings,
  { readonly stateFile: string }
>() {
  static readonly layer = (stateFile: string) => Layer.succeed(StanzaStateSettings, { stateFile })
}

const StateFile = Schema.parseJson(
  Schema.Struct({
    version: Schema.Literal(1),
    stanzas: Schema.Record({ key: Schema.String, value: Schema.Struct({ initialisedAt: Schema.String }) }),
  }),
)
type StateFile = typeof StateFile.Type

const empty: StateFile = { version: 1, stanzas: {} }

/**
 * Durable record of which stanza layouts (see `stanzaFingerprint`) have been initialised with
 * `stanza-create`. A restarted sidecar reads it back, so the stanza is created once per layout and
 * never before every WAL; a new layout (an added repository) is initialised again automatically.
 * Losing the file is harmless: `stanza-create` is idempotent and simply runs once more.
 */
export class StanzaState extends Effect.Service<StanzaState>()("cnpg-pgbackrest/StanzaState", {
  effect: Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const { stateFile } = yield* StanzaStateSettings
    const text = yield* fs.readFileString(stateFile).pipe(Effect.option)
    const decoded = text._tag === "None" ? Either.right(empty) : Schema.decodeEither(StateFile)(text.value)
    if (Either.isLeft(decoded)) {
      yield* Effect.logWarning("stanza state file unreadable; stanzas will be initialised again").pipe(
        Effect.annotateLogs({ stateFile }),
      )
    }
    const state = yield* Ref.make(Either.getOrElse(decoded, () => empty))
    const writer = yield* Effect.makeSemaphore(1)

    // Write-then-rename so a crash mid-write leaves the old record, never a torn one.
    const persist = (next: StateFile) =>
      Effect.gen(function* () {
        const temporary = `${stateFile}.${process.pid}.tmp`
        yield* fs.makeDirectory(path.dirname(stateFile), { recursive: true })
        yield* fs.writeFileString(temporary, Schema.encodeSync(StateFile)(next))
        yield* fs.rename(temporary, stateFile)
      }).pipe(
        Effect.catchAll((error) =>
          Effect.logWarning("cannot persist stanza state; it is kept in memory only", error.message).pipe(
            Effect.annotateLogs({ stateFile }),
          ),
        ),
      )

    const update = (change: (current: StateFile) => StateFile) =>
      Ref.updateAndGet(state, change).pipe(Effect.flatMap(persist))

    const isInitialised = (fingerprint: string) =>
      Ref.get(state).pipe(Effect.map((current) => Object.hasOwn(current.stanzas, fingerprint)))

    return {
      isInitialised,
      /** Runs `initialise` unless `fingerprint` is recorded, then records it; concurrent callers run it once. */
      ensure: <E, R>(fingerprint: string, initialise: Effect.Effect<void, E, R>) =>
        writer.withPermits(1)(
          Effect.gen(function* () {
            if (yield* isInitialised(fingerprint)) {
              return false
            }
            yield* initialise
            const now = new Date(yield* Clock.currentTimeMillis).toISOString()
            yield* update((current) => ({
              ...current,
              stanzas: { ...current.stanzas, [fingerprint]: { initialisedAt: now } },
            }))
            return true
          }),
        ),
      /** Drops the record, e.g. when the repository turns out to have lost its stanza. */
      forget: (fingerprint: string) =>
        writer.withPermits(1)(
          update((current) => ({
            ...current,
            stanzas: Object.fromEntries(
              Object.entries(current.stanzas).filter(([key]) => key !== fingerprint),
            ),
          })),
        ),
    }
  }),
}) {}
