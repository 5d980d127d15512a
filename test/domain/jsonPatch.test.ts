import { assert, describe, it } from "@effect/vitest"
import { applyPatch } from "fast-json-patch"
import { appendTo, pointer } from "../../src/domain/jsonPatch.js"

describe("JSON Pointer", () => {
  it("escapes ~ and / in reference tokens, so the API server finds the key", () => {
    assert.strictEqual(pointer("metadata", "annotations", "a~b/c"), "/metadata/annotations/a~0b~1c")
    assert.strictEqual(pointer("x", "~1"), "/x/~01")
    const doc = { metadata: { annotations: { "a~b/c": "old" } } }
    const path = pointer("metadata", "annotations", "a~b/c")
    assert.deepStrictEqual(
      applyPatch(doc, [{ op: "replace", path, value: "new" }], true, false).newDocument,
      {
        metadata: { annotations: { "a~b/c": "new" } },
      },
    )
  })

  it("appends to an existing list, or creates it", () => {
    assert.deepStrictEqual(appendTo(["spec", "a/b"], [], 1), { op: "add", path: "/spec/a~1b/-", value: 1 })
    assert.deepStrictEqual(appendTo(["spec", "a/b"], undefined, 1), {
      op: "add",
      path: "/spec/a~1b",
      value: [1],
    })
  })
})
