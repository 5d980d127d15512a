import fc from "fast-check"

/**
 * Values an attacker (or a broken caller) would send: shell metacharacters, path traversals, control
 * characters, unicode tricks, numbers where strings go, and large strings. Sizes stay small enough
 * that an error message quoting one fits a gRPC status: quoting a larger value is a separate, pinned
 * case (see wire.test.ts).
 */

export const SHELL = [
  "$(id)",
  "`id`",
  "; rm -rf /",
  "| cat /etc/passwd",
  "&& reboot",
  "' \" \\",
  "$IFS$9",
  "*",
  "?",
  "~",
  ">out",
  "<in",
  "-",
  "--repo=9",
  "--config=/tmp/x",
  "-o",
] as const

export const TRAVERSAL = [
  "..",
  "../..",
  "../../etc/x",
  "/etc/passwd",
  "/",
  "./",
  "//",
  "/..",
  "%2e%2e%2f",
  "..\\..",
  "\u202e",
  "\uff0e\uff0e",
] as const

export const CONTROL = ["\n", "\r\n", "\u0000", "\t", "\u001b[2J", "\u007f", "\u2028"] as const

const special = fc.constantFrom<string>(...SHELL, ...TRAVERSAL, ...CONTROL)

/**
 * A string of 256 to 4096 characters, built by repetition (fast-check is slow at drawing long strings).
 * JSON may quote a character in 6 bytes (`\u0000`), and messages quote values: 24 KiB at most.
 */
export const largeString: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom("x", "\u00e9", "\n", "$(id)", "../", "\u0000"), fc.integer({ min: 256, max: 4096 }))
  .map(([unit, size]) => unit.repeat(Math.ceil(size / unit.length)))

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.string({ maxLength: 24 }), weight: 2 },
  { arbitrary: fc.string({ unit: "binary", maxLength: 24 }), weight: 2 },
  { arbitrary: special, weight: 3 },
  {
    arbitrary: fc
      .tuple(fc.string({ maxLength: 8 }), special, fc.string({ maxLength: 8 }))
      .map(([before, middle, after]) => `${before}${middle}${after}`),
    weight: 3,
  },
  { arbitrary: largeString, weight: 1 },
)

/** Anything JSON can carry where a string was expected, or a hostile string. */
export const hostileJson: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: hostileString, weight: 4 },
  { arbitrary: fc.constantFrom<unknown>(null, true, false, 0, -1, 1.5, 1e308, [], {}, ""), weight: 2 },
  { arbitrary: fc.jsonValue({ maxDepth: 2 }), weight: 1 },
)

/** A newline or a NUL: what an argv element or an environment value must not carry. */
export const breaksLine = (value: string): boolean =>
  value.includes("\n") || value.includes("\r") || value.includes("\u0000")

/** A JSON path and the object with the value at that path replaced, removed, or given a sibling. */
export type Mutation =
  | { readonly kind: "set"; readonly path: ReadonlyArray<string | number>; readonly value: unknown }
  | { readonly kind: "delete"; readonly path: ReadonlyArray<string | number> }
  | { readonly kind: "extra"; readonly path: ReadonlyArray<string | number>; readonly key: string }

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const child = (node: unknown, key: string | number): unknown =>
  Array.isArray(node)
    ? typeof key === "number"
      ? node[key]
      : undefined
    : isRecord(node)
      ? node[key]
      : undefined

/** The value at `path` of a JSON value. */
export const valueAt = (value: unknown, path: ReadonlyArray<string | number>): unknown =>
  path.reduce<unknown>(child, value)

/** Every path of a JSON value (objects and arrays), the root excluded. */
export const pathsOf = (value: unknown, prefix: ReadonlyArray<string | number> = []) => {
  const paths: Array<ReadonlyArray<string | number>> = []
  if (Array.isArray(value)) {
    value.forEach((item, index) => {
      paths.push([...prefix, index], ...pathsOf(item, [...prefix, index]))
    })
  } else if (isRecord(value)) {
    for (const [key, item] of Object.entries(value)) {
      paths.push([...prefix, key], ...pathsOf(item, [...prefix, key]))
    }
  }
  return paths
}

/** `spec.s3Repositories[0].bucket`, as the plugin names fields. */
export const renderPath = (prefix: string, path: ReadonlyArray<string | number>): string =>
  path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? key : `${acc}.${key}`),
    prefix,
  )

/** A deep copy of `value` with `mutation` applied (the input is left as it was). */
export const applyMutation = (value: unknown, mutation: Mutation): unknown => {
  const copy: unknown = structuredClone(value)
  const parentPath = mutation.kind === "extra" ? mutation.path : mutation.path.slice(0, -1)
  const parent = valueAt(copy, parentPath)
  const last = mutation.path[mutation.path.length - 1]
  if (mutation.kind === "extra") {
    if (isRecord(parent)) {
      Object.defineProperty(parent, mutation.key, { value: "extra", enumerable: true, writable: true })
    }
  } else if (Array.isArray(parent) && typeof last === "number") {
    if (mutation.kind === "set") {
      parent[last] = mutation.value
    } else {
      parent.splice(last, 1)
    }
  } else if (isRecord(parent) && last !== undefined) {
    if (mutation.kind === "set") {
      Object.defineProperty(parent, last, { value: mutation.value, enumerable: true, writable: true })
    } else {
      delete parent[last]
    }
  }
  return copy
}

/** One mutation of `base`: a hostile value, a removal, or an unknown sibling field with a hostile name. */
export const mutationOf = (base: unknown): fc.Arbitrary<Mutation> => {
  const paths = pathsOf(base)
  const objectPaths = [[], ...paths].filter((path) => isRecord(valueAt(base, path)))
  return fc.oneof(
    {
      arbitrary: fc.record({
        kind: fc.constant("set" as const),
        path: fc.constantFrom(...paths),
        value: hostileJson,
      }),
      weight: 6,
    },
    {
      arbitrary: fc.record({ kind: fc.constant("delete" as const), path: fc.constantFrom(...paths) }),
      weight: 2,
    },
    {
      arbitrary: fc.record({
        kind: fc.constant("extra" as const),
        path: fc.constantFrom(...objectPaths),
        key: fc.oneof(hostileString, fc.constantFrom("__proto__", "constructor", "verifyTls", "bucketName")),
      }),
      weight: 2,
    },
  )
}
