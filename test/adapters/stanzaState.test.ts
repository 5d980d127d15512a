import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer, Ref } from "effect"
import { StanzaState, StanzaStateSettings } from "../../src/adapters/stanzaState.js"
import { tempDir } from "../support/tempDir.js"

/** A fresh StanzaState over `stateFile`, as a restarted sidecar would build it. */
const stateAt = (stateFile: string) =>
  Effect.provide(
    StanzaState,
    StanzaState.Default.pipe(
      Layer.provide(StanzaStateSettings.layer(stateFile)),
      Layer.provide(NodeContext.layer),
    ),
  )

const counter = Effect.gen(function* () {
  const runs = yield* Ref.make(0)
  return { runs, initialise: Ref.update(runs, (n) => n + 1) }
})

describe("StanzaState", () => {
  it.scoped("initialises a stanza layout once, and remembers it across a restart", () =>
    Effect.gen(function* () {
      const stateFile = path.join(yield* tempDir(), "plugin", "stanzas.json")
      const { runs, initialise } = yield* counter
      const first = yield* stateAt(stateFile)
      assert.isTrue(yield* first.ensure("layout-a", initialise))
      assert.isFalse(yield* first.ensure("layout-a", initialise))
      const restarted = yield* stateAt(stateFile)
      assert.isTrue(yield* restarted.isInitialised("layout-a"))
      assert.isFalse(yield* restarted.ensure("layout-a", initialise))
      assert.strictEqual(yield* Ref.get(runs), 1)
    }),
  )

  it.scoped("initialises again when the layout changes (a repository was added)", () =>
    Effect.gen(function* () {
      const stateFile = path.join(yield* tempDir(), "stanzas.json")
      const { runs, initialise } = yield* counter
      const state = yield* stateAt(stateFile)
      yield* state.ensure("one-repository", initialise)
      yield* state.ensure("two-repositories", initialise)
      assert.strictEqual(yield* Ref.get(runs), 2)
      const restarted = yield* stateAt(stateFile)
      assert.isTrue(yield* restarted.isInitialised("one-repository"))
      assert.isTrue(yield* restarted.isInitialised("two-repositories"))
    }),
  )

  it.scoped("does not record a failed initialisation", () =>
    Effect.gen(function* () {
      const stateFile = path.join(yield* tempDir(), "stanzas.json")
      const state = yield* stateAt(stateFile)
      const exit = yield* Effect.exit(state.ensure("layout", Effect.fail("stanza-create failed")))
      assert.isTrue(Exit.isFailure(exit))
      assert.isFalse(yield* state.isInitialised("layout"))
      assert.isFalse(yield* (yield* stateAt(stateFile)).isInitialised("layout"))
    }),
  )

  it.scopedLive("runs one initialisation for concurrent callers", () =>
    Effect.gen(function* () {
      const stateFile = path.join(yield* tempDir(), "stanzas.json")
      const { runs, initialise } = yield* counter
      const state = yield* stateAt(stateFile)
      yield* Effect.all(
        Array.from({ length: 10 }, () =>
          state.ensure("layout", Effect.zipRight(Effect.sleep("5 millis"), initialise)),
        ),
        { concurrency: "unbounded" },
      )
      assert.strictEqual(yield* Ref.get(runs), 1)
    }),
  )

  it.scoped("forgets a layout on request and initialises it again", () =>
    Effect.gen(function* () {
      const stateFile = path.join(yield* tempDir(), "stanzas.json")
      const { runs, initialise } = yield* counter
      const state = yield* stateAt(stateFile)
      yield* state.ensure("layout", initialise)
      yield* state.forget("layout")
      assert.isFalse(yield* (yield* stateAt(stateFile)).isInitialised("layout"))
      yield* state.ensure("layout", initialise)
      assert.strictEqual(yield* Ref.get(runs), 2)
    }),
  )

  it.scoped("treats a corrupt state file as empty, so stanza-create simply runs again", () =>
    Effect.gen(function* () {
      const stateFile = path.join(yield* tempDir(), "stanzas.json")
      yield* Effect.promise(() => fs.writeFile(stateFile, "{ torn"))
      const { runs, initialise } = yield* counter
      const state = yield* stateAt(stateFile)
      assert.isTrue(yield* state.ensure("layout", initialise))
      assert.strictEqual(yield* Ref.get(runs), 1)
      const written = JSON.parse(yield* Effect.promise(() => fs.readFile(stateFile, "utf8")))
      assert.deepStrictEqual(Object.keys(written.stanzas), ["layout"])
    }),
  )
})
