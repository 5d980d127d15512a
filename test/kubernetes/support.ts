import * as fs from "node:fs"
import * as path from "node:path"
import { loadAllYaml } from "@kubernetes/client-node"

/** The repository root (vitest runs from it; the tests also read files relative to it). */
export const ROOT = path.resolve(import.meta.dirname, "../..")

export const read = (file: string): string => fs.readFileSync(path.join(ROOT, file), "utf8")

export type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
export type JsonObject = { readonly [key: string]: Json }

export const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** A Kubernetes object as written in a manifest. */
export interface Manifest extends JsonObject {
  readonly apiVersion: string
  readonly kind: string
}

export const isManifest = (value: unknown): value is Manifest =>
  isObject(value) && typeof value.apiVersion === "string" && typeof value.kind === "string"

const meaningful = (part: string): boolean =>
  part.split("\n").some((line) => line.trim() !== "" && !line.trim().startsWith("#"))

/**
 * The documents of a YAML stream exactly as written. `loadAllYaml` turns built-in kinds into the
 * client's typed models (unknown fields dropped, `x-kubernetes-*` renamed), so each document is
 * loaded under a wrapper key, where it is not a Kubernetes object and stays as it is. The same trick
 * as scripts/buildManifest.mjs.
 */
export const rawDocuments = (text: string): ReadonlyArray<Json> =>
  text
    .split(/^---[ \t]*$/m)
    .filter(meaningful)
    .map((part) => {
      const wrapped = `document:\n${part
        .split("\n")
        .map((line) => `  ${line}`)
        .join("\n")}`
      const [loaded]: ReadonlyArray<unknown> = loadAllYaml(wrapped)
      if (!isObject(loaded) || !("document" in loaded)) {
        throw new Error("a YAML document did not load")
      }
      return loaded.document ?? null
    })

export const rawManifests = (text: string, source: string): ReadonlyArray<Manifest> =>
  rawDocuments(text).map((document, index) => {
    if (!isManifest(document)) {
      throw new Error(`${source}: document ${index + 1} has no apiVersion and kind`)
    }
    return document
  })

/** The objects of a manifest, with `kind: List` opened (kubectl applies its items one by one). */
export const objectsOf = (manifests: ReadonlyArray<Manifest>): ReadonlyArray<Manifest> =>
  manifests.flatMap((manifest) =>
    manifest.kind === "List" && Array.isArray(manifest.items)
      ? manifest.items.filter(isManifest)
      : [manifest],
  )

export const yamlFiles = (directory: string): ReadonlyArray<string> => {
  const entries = fs.readdirSync(path.join(ROOT, directory), { withFileTypes: true, recursive: true })
  return entries
    .filter((entry) => entry.isFile() && /\.ya?ml$/.test(entry.name))
    .map((entry) => path.relative(ROOT, path.join(entry.parentPath, entry.name)))
    .sort()
}

/** Keys sorted at every level: two trees compare equal whatever order their keys were written in. */
export const canonical = (value: unknown): string =>
  JSON.stringify(value, (_, node: unknown) =>
    isObject(node) ? Object.fromEntries(Object.entries(node).sort(([a], [b]) => a.localeCompare(b))) : node,
  )

/** `value.a.b[0]`, or undefined when any step is missing. */
export const at = (value: unknown, ...keys: ReadonlyArray<string | number>): unknown =>
  keys.reduce<unknown>((node, key) => {
    if (typeof key === "number") {
      return Array.isArray(node) ? node[key] : undefined
    }
    return isObject(node) ? node[key] : undefined
  }, value)

export const metadataName = (manifest: Manifest): string => {
  const name = at(manifest, "metadata", "name")
  return typeof name === "string" ? name : ""
}

export const kindAndName = (manifest: Manifest): string => `${manifest.kind}/${metadataName(manifest)}`
