import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { JSONSchema } from "effect"
import { StanzaSpec } from "../../src/domain/stanza.js"
import {
  canonical,
  isObject,
  type Json,
  kindAndName,
  objectsOf,
  ROOT,
  rawDocuments,
  rawManifests,
  read,
  yamlFiles,
} from "./support.js"

const DOCS = ["installation", "usage", "configuration", "troubleshooting", "upgrades", "architecture"].map(
  (name) => `docs/${name}.md`,
)

/**
 * Every field path of the plugin's Stanza schema under `stanzaConfiguration`, `[]` for list items; a
 * Secret selector counts as one field.
 */
const schemaPaths = (): ReadonlyArray<string> => {
  const root = JSONSchema.make(StanzaSpec) as unknown as Json
  const defs = isObject(root) && isObject(root.$defs) ? root.$defs : {}
  const resolve = (node: Json): Json =>
    isObject(node) && typeof node.$ref === "string" ? (defs[node.$ref.replace("#/$defs/", "")] ?? node) : node
  const paths: Array<string> = []
  const walk = (node: Json, prefix: string) => {
    const resolved = resolve(node)
    if (!isObject(resolved)) {
      return
    }
    // A Secret selector ({name, key}) is documented as one field.
    if (
      isObject(resolved.properties) &&
      canonical(Object.keys(resolved.properties).sort()) !== '["key","name"]'
    ) {
      for (const [key, child] of Object.entries(resolved.properties)) {
        const childPath = prefix === "" ? key : `${prefix}.${key}`
        paths.push(childPath)
        walk(child, childPath)
      }
    }
    if (resolved.type === "array" && resolved.items !== undefined) {
      walk(resolved.items, `${prefix}[]`)
    }
  }
  const config = isObject(root) && isObject(root.properties) ? root.properties.stanzaConfiguration : null
  walk(config ?? null, "")
  return paths
}

/** The first-column code spans of the table under `## Reference` in configuration.md. */
const documentedPaths = (): ReadonlyArray<string> => {
  const text = read("docs/configuration.md")
  const section = text.slice(
    text.indexOf("## Reference"),
    text.indexOf("\n## ", text.indexOf("## Reference") + 1),
  )
  return [...section.matchAll(/^\|\s*`([^`]+)`\s*\|/gm)].map((match) => match[1] ?? "")
}

/** GitHub's anchor of a heading. */
const slug = (heading: string): string =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, "")
    .replace(/ /g, "-")

describe("docs/", () => {
  it("has every page", () => {
    for (const page of DOCS) {
      assert.isTrue(fs.existsSync(path.join(ROOT, page)), page)
    }
  })

  it("configuration.md documents every field of the Stanza, and no field that does not exist", () => {
    const fields = schemaPaths()
    assert.isAtLeast(fields.length, 40)
    const documented = documentedPaths()
    assert.deepStrictEqual([...documented].sort(), [...fields].sort())
  })

  it("links to files and headings that exist", () => {
    for (const page of DOCS) {
      const text = read(page)
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (target === undefined || /^[a-z]+:/.test(target)) {
          continue
        }
        const [file = "", anchor] = target.split("#")
        const resolved = file === "" ? page : path.join(path.dirname(page), file)
        assert.isTrue(fs.existsSync(path.join(ROOT, resolved)), `${page}: ${target}`)
        if (anchor !== undefined) {
          const headings = [...read(resolved).matchAll(/^#+ (.+)$/gm)].map((match) => slug(match[1] ?? ""))
          assert.include(headings, anchor, `${page}: ${target}`)
        }
      }
    }
  })

  it("names example files that exist", () => {
    for (const page of DOCS) {
      for (const [mention] of read(page).matchAll(/examples\/[\w.-]+\.yaml/g)) {
        assert.isTrue(fs.existsSync(path.join(ROOT, mention)), `${page}: ${mention}`)
      }
    }
  })

  it("quotes whole manifests exactly as examples/ has them", () => {
    const examples = new Map(
      yamlFiles("examples").flatMap((file) =>
        objectsOf(rawManifests(read(file), file)).map(
          (object) => [kindAndName(object), canonical(object)] as const,
        ),
      ),
    )
    let quoted = 0
    for (const page of DOCS) {
      for (const [, block] of read(page).matchAll(/```yaml\n([\s\S]*?)```/g)) {
        const [document] = rawDocuments(block ?? "")
        if (!isObject(document) || typeof document.kind !== "string" || !isObject(document.metadata)) {
          continue
        }
        const manifests = rawManifests(block ?? "", page)
        for (const manifest of manifests) {
          const key = kindAndName(manifest)
          if (examples.has(key)) {
            assert.strictEqual(
              canonical(manifest),
              examples.get(key),
              `${page}: ${key} differs from examples/`,
            )
            quoted++
          }
        }
      }
    }
    assert.isAtLeast(quoted, 5)
  })
})
