import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import {
  CONFIG,
  DECODER_TABLE,
  decoderInvalidLabels,
  exampleStanzas,
  type InvalidCase,
  MORE_INVALID,
  minimalStanza,
  VALID,
  withValue,
} from "./corpus.js"
import { apiServer, describeErrors, plugin } from "./stanzaCrd.js"
import { at, type Json, type JsonObject } from "./support.js"

/** The CRD schema and the plugin's decoder, on a corpus of valid and invalid Stanzas. */
describe("the Stanza CRD and the plugin's decoder", () => {
  describe("accepts what the plugin accepts", () => {
    const cases: ReadonlyArray<readonly [string, Json]> = [
      ...exampleStanzas().map(
        ({ file, stanza }) => [`${file}: ${String(at(stanza, "metadata", "name"))}`, stanza] as const,
      ),
      ...VALID,
    ]
    it("has the examples in its corpus", () => {
      assert.isAtLeast(exampleStanzas().length, 4)
    })
    for (const [label, object] of cases) {
      it(label, () => {
        const outcome = apiServer(object)
        assert.deepStrictEqual(outcome.errors, [], describeErrors(object))
        assert.deepStrictEqual(outcome.pruned, [], describeErrors(object))
        const direct = plugin(object)
        assert.isTrue(Either.isRight(direct), describeErrors(object))
        // What the plugin reads back from the API server (pruned, defaulted) means the same.
        const stored = plugin({ ...(outcome.stored as JsonObject), metadata: at(object, "metadata") as Json })
        assert.isTrue(Either.isRight(stored))
        if (Either.isRight(direct) && Either.isRight(stored)) {
          assert.deepStrictEqual(stored.right.spec, direct.right.spec)
        }
      })
    }
  })

  describe("refuses what the plugin refuses, where OpenAPI can say it", () => {
    it("covers every case of the decoder's own table (test/domain/stanza.test.ts)", () => {
      assert.deepStrictEqual(
        DECODER_TABLE.map((entry) => entry.label),
        decoderInvalidLabels(),
      )
    })

    const run = (entry: InvalidCase) => {
      const outcome = apiServer(entry.spec)
      const decoded = plugin(entry.spec)
      assert.isTrue(Either.isLeft(decoded), `the plugin accepts it: ${describeErrors(entry.spec)}`)
      switch (entry.category) {
        case "both":
          assert.isNotEmpty(outcome.errors, `the API server accepts it: ${describeErrors(entry.spec)}`)
          break
        case "pruned": {
          assert.deepStrictEqual(outcome.errors, [], describeErrors(entry.spec))
          assert.deepStrictEqual(outcome.pruned, [entry.prunedField ?? "(none)"], describeErrors(entry.spec))
          const stored = plugin({
            ...(outcome.stored as JsonObject),
            metadata: at(entry.spec, "metadata") as Json,
          })
          assert.isTrue(Either.isRight(stored), "the stored object should decode")
          break
        }
        case "plugin":
          assert.deepStrictEqual(outcome.errors, [], describeErrors(entry.spec))
          assert.deepStrictEqual(outcome.pruned, [], describeErrors(entry.spec))
          break
        case "envelope":
          assert.deepStrictEqual(outcome.errors, [], describeErrors(entry.spec))
          break
      }
    }

    for (const entry of [...DECODER_TABLE, ...MORE_INVALID]) {
      it(`${entry.label} (${entry.category})`, () => run(entry))
    }

    it("refuses a Stanza without spec, and one whose spec has no stanzaConfiguration", () => {
      assert.isNotEmpty(apiServer(withValue(minimalStanza(), ["spec"], undefined)).errors)
      assert.isNotEmpty(apiServer(withValue(minimalStanza(), [...CONFIG], undefined)).errors)
    })
  })
})
