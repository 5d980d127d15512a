/**
 * The slice of RFC 6902 JSON Patch the plugin emits, and RFC 6901 JSON Pointers to build its paths.
 * CloudNativePG applies the patch to the very JSON it sent (`object_definition`), so every path is
 * relative to that object.
 */
export type JsonPatchOperation =
  | { readonly op: "add"; readonly path: string; readonly value: unknown }
  | { readonly op: "replace"; readonly path: string; readonly value: unknown }
  | { readonly op: "remove"; readonly path: string }
  | { readonly op: "test"; readonly path: string; readonly value: unknown }

/** One reference token: `~` becomes `~0` and `/` becomes `~1` (in that order, RFC 6901 §3). */
export const escapeToken = (token: string | number): string =>
  String(token).replaceAll("~", "~0").replaceAll("/", "~1")

/** `pointer("metadata", "labels", "cnpg.io/jobRole")` is `/metadata/labels/cnpg.io~1jobRole`. */
export const pointer = (...tokens: ReadonlyArray<string | number>): string =>
  tokens.map((token) => `/${escapeToken(token)}`).join("")

/**
 * Appends `value` to the array at `path`, or creates the array when the object has none (Go omits
 * empty slices, so `spec.initContainers` or a container's `volumeMounts` may be absent or null).
 */
export const appendTo = (
  path: ReadonlyArray<string | number>,
  existing: ReadonlyArray<unknown> | undefined,
  value: unknown,
): JsonPatchOperation =>
  existing === undefined
    ? { op: "add", path: pointer(...path), value: [value] }
    : { op: "add", path: pointer(...path, "-"), value }
