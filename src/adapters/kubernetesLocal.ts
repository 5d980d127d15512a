import { FileSystem, Path } from "@effect/platform"
import { loadAllYaml } from "@kubernetes/client-node"
import { Effect, Layer, Predicate } from "effect"
import { InvalidRequest, Unavailable } from "../domain/errors.js"
import { makeMemoryBackend, type SourcedObject } from "./kubernetesMemory.js"
import { KubernetesBackend, type ResourceRef } from "./kubernetesResource.js"

interface Chunk {
  /** 1-based, counting only documents that have content. */
  readonly index: number
  /** 0-based line of the file where the document starts. */
  readonly firstLine: number
  readonly text: string
}

const hasContent = (line: string) => !/^\s*(#.*)?$/.test(line)

/**
 * Splits a YAML stream at its `---` / `...` markers. client-node's `loadAllYaml` fails on a whole file
 * with a TypeError when one document is empty (a trailing `---`, which users often write), so each
 * document is parsed alone; that also gives errors their document number.
 */
const splitDocuments = (text: string): ReadonlyArray<Chunk> => {
  const chunks: Array<Chunk> = []
  let lines: Array<string> = []
  let firstLine = 0
  const flush = (next: number) => {
    if (lines.some(hasContent)) {
      chunks.push({ index: chunks.length + 1, firstLine, text: lines.join("\n") })
    }
    lines = []
    firstLine = next
  }
  text.split(/\r?\n/).forEach((line, number) => {
    if (/^(---|\.\.\.)(\s|$)/.test(line)) {
      flush(number + 1)
    } else {
      lines.push(line)
    }
  })
  flush(0)
  return chunks
}

/** `bad indentation (line 7)`: js-yaml's full message quotes the lines around the error, maybe a secret. */
const yamlProblem = (error: unknown, firstLine: number): string => {
  const reason =
    Predicate.hasProperty(error, "reason") && typeof error.reason === "string" ? error.reason : undefined
  const line =
    Predicate.hasProperty(error, "mark") &&
    Predicate.hasProperty(error.mark, "line") &&
    typeof error.mark.line === "number"
      ? ` (line ${firstLine + error.mark.line + 1})`
      : ""
  const fallback = error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error)
  return `not valid YAML: ${reason ?? fallback}${line}`
}

/** The objects of one manifest file, each with its source for messages (`stanza.yaml (document 2)`). */
export const parseManifests = (
  file: string,
  text: string,
): Effect.Effect<ReadonlyArray<SourcedObject>, InvalidRequest> =>
  Effect.forEach(splitDocuments(text), (chunk) => {
    const source = `${file} (document ${chunk.index})`
    return Effect.try({
      try: (): ReadonlyArray<unknown> => loadAllYaml(chunk.text),
      catch: (error) => new InvalidRequest({ field: source, reason: yamlProblem(error, chunk.firstLine) }),
    }).pipe(
      Effect.map((documents) =>
        documents
          .filter((object) => object !== null && object !== undefined)
          .map((object) => ({ source, object })),
      ),
    )
  }).pipe(Effect.map((groups) => groups.flat()))

/**
 * Local mode: the objects are the manifests a user would `kubectl apply`, read once from `dir` (every
 * `*.yaml` / `*.yml` file, multi-document). Status patches change the object in memory and are written
 * to `<dir>/.status/<namespace>/<plural>/<name>.json` so a local run shows what it reported.
 */
export const localBackendLayer = (
  dir: string,
): Layer.Layer<KubernetesBackend, InvalidRequest, FileSystem.FileSystem | Path.Path> =>
  Layer.effect(
    KubernetesBackend,
    Effect.gen(function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const entries = yield* fs.readDirectory(dir).pipe(
        Effect.mapError(
          (error) =>
            new InvalidRequest({
              field: dir,
              reason: `cannot read the manifest directory: ${error.message}`,
            }),
        ),
      )
      const files = entries.filter((name) => /\.ya?ml$/i.test(name) && !name.startsWith(".")).sort()
      const objects: Array<SourcedObject> = []
      for (const file of files) {
        const text = yield* fs
          .readFileString(path.join(dir, file))
          .pipe(
            Effect.mapError(
              (error) => new InvalidRequest({ field: file, reason: `cannot read: ${error.message}` }),
            ),
          )
        objects.push(...(yield* parseManifests(file, text)))
      }

      const statusDir = path.join(dir, ".status")
      const writeStatus = (resource: ResourceRef, namespace: string, name: string, status: unknown) => {
        const folder = path.join(statusDir, namespace, resource.plural)
        const file = path.join(folder, `${name}.json`)
        return fs.makeDirectory(folder, { recursive: true }).pipe(
          // Written aside then renamed: a reader never sees half a file.
          Effect.zipRight(fs.writeFileString(`${file}.tmp`, `${JSON.stringify(status, null, 2)}\n`)),
          Effect.zipRight(fs.rename(`${file}.tmp`, file)),
          Effect.mapError(
            (error) =>
              new Unavailable({ what: `local status directory ${statusDir}`, reason: error.message }),
          ),
        )
      }

      const backend = yield* makeMemoryBackend(objects, { onStatus: writeStatus })
      yield* Effect.logInfo("serving Kubernetes objects from local manifests").pipe(
        Effect.annotateLogs({ dir, files, objects: objects.length }),
      )
      return backend
    }),
  )
