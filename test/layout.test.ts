import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"

/**
 * The folders of `src/` are the architecture: domain ← grpc, adapters ← instance, operator; domain ←
 * cnpg (CloudNativePG's side, ported) ← cli; all ← main.
 * This reads every import of every module and checks it against that order, so an upward import (a
 * domain module reaching for gRPC, an adapter for the sidecar's settings) fails here, not in review.
 */
const SRC = path.resolve(import.meta.dirname, "../src")

/** Which folders each folder may import from (its own always). `main.ts` may import anything. */
const ALLOWED: Readonly<Record<string, ReadonlyArray<string>>> = {
  generated: [],
  domain: [],
  grpc: ["domain", "generated"],
  adapters: ["domain"],
  instance: ["domain", "generated", "grpc", "adapters"],
  operator: ["domain", "generated", "grpc", "adapters"],
  cnpg: ["domain", "generated"],
  cli: ["domain", "generated", "grpc", "cnpg"],
}

/** Packages that bring I/O, gRPC or a CLI: none of them belongs in pure domain logic. */
const NOT_IN_DOMAIN =
  /^(nice-grpc|nice-grpc-common|@grpc\/|@effect\/platform|@kubernetes\/|node:(fs|child_process|net|tls|util|http|https|process|os)\b)/

const modules = (dir: string): ReadonlyArray<string> =>
  readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => path.join(entry.parentPath, entry.name))

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^"';]*?from\s+"([^"]+)"|import\s*\(\s*"([^"]+)"\s*\)/g

const importsOf = (file: string): ReadonlyArray<string> =>
  Array.from(readFileSync(file, "utf8").matchAll(IMPORT), (match) => match[1] ?? match[2] ?? "")

/** The top folder under `src/` of a file, or "" for a module at the top (`main.ts`). */
const folderOf = (file: string): string => {
  const relative = path.relative(SRC, file)
  return relative.includes(path.sep) ? (relative.split(path.sep)[0] ?? "") : ""
}

interface Edge {
  readonly from: string
  /** A path under `src/` for a relative import, else the package specifier. */
  readonly to: string
  readonly relative: boolean
}

const edges: ReadonlyArray<Edge> = modules(SRC).flatMap((file) =>
  importsOf(file).map((specifier) => ({
    from: path.relative(SRC, file),
    to: specifier.startsWith(".")
      ? path.relative(SRC, path.resolve(path.dirname(file), specifier))
      : specifier,
    relative: specifier.startsWith("."),
  })),
)

const folderOfRelative = (relative: string): string => folderOf(path.join(SRC, relative))

describe("src/ layout", () => {
  it("reads the imports of every module", () => {
    // The checks below mean nothing if the parser finds no edge: the graph has hundreds.
    assert.isAbove(edges.length, 200)
    assert.isTrue(
      edges.some((edge) => edge.from === "instance/wal.ts" && edge.to === "adapters/pgBackRest.js"),
    )
  })

  it("has no import from a lower folder to a higher one", () => {
    const upward = edges.filter((edge) => {
      const from = folderOfRelative(edge.from)
      // package.json, read by domain/plugin.ts for the version, is outside src/ and not a module.
      if (from === "" || !edge.relative || edge.to.startsWith("..")) {
        return false
      }
      const to = folderOfRelative(edge.to)
      const allowed = ALLOWED[from]
      return to !== from && (allowed === undefined || !allowed.includes(to))
    })
    assert.deepStrictEqual(
      upward.map((edge) => `${edge.from} -> ${edge.to}`),
      [],
    )
  })

  it("keeps src/domain free of gRPC, I/O and CLI packages", () => {
    const impure = edges.filter(
      (edge) => folderOfRelative(edge.from) === "domain" && NOT_IN_DOMAIN.test(edge.to),
    )
    assert.deepStrictEqual(
      impure.map((edge) => `${edge.from} -> ${edge.to}`),
      [],
    )
  })

  it("knows every folder of src/", () => {
    const folders = new Set(modules(SRC).map(folderOf))
    folders.delete("")
    assert.deepStrictEqual([...folders].sort(), Object.keys(ALLOWED).sort())
  })
})
