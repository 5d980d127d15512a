// Builds manifest.yaml, the single file of `kubectl apply -f manifest.yaml`, from the kustomize tree in
// kubernetes/: the resources in the order kustomization.yaml lists them, with the transformations it
// asks for (namespace, images, replacements). Only the kustomization fields used there are understood;
// any other one is an error rather than a manifest that silently differs from `kubectl apply -k`.
//
//   node scripts/buildManifest.mjs            writes manifest.yaml
//   node scripts/buildManifest.mjs --stdout   prints it instead
//   node scripts/buildManifest.mjs --check    exits 1 when manifest.yaml is not current
import { spawnSync } from "node:child_process"
import { readFileSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { dumpYaml, loadAllYaml } from "@kubernetes/client-node"

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const SOURCE = join(ROOT, "kubernetes")
const OUTPUT = join(ROOT, "manifest.yaml")
const BIOME = join(ROOT, "node_modules", ".bin", "biome")

const HEADER = [
  "# cnpg-plugin-pgbackrest: the operator-side plugin and the Stanza CRD, for the cnpg-system namespace.",
  "#   kubectl apply -f manifest.yaml",
  "# Generated from kubernetes/ by scripts/buildManifest.mjs: edit those files, then rebuild.",
  "",
].join("\n")

const SUPPORTED_FIELDS = new Set(["apiVersion", "kind", "namespace", "resources", "images", "replacements"])

/** Kinds without a namespace: kustomize's `namespace:` leaves them alone. */
const CLUSTER_SCOPED = new Set([
  "APIService",
  "ClusterIssuer",
  "ClusterRole",
  "ClusterRoleBinding",
  "CustomResourceDefinition",
  "MutatingWebhookConfiguration",
  "Namespace",
  "PersistentVolume",
  "PriorityClass",
  "StorageClass",
  "ValidatingWebhookConfiguration",
])

const fail = (message) => {
  throw new Error(`buildManifest: ${message}`)
}

const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value)

/**
 * The documents of a YAML file, as written. `loadAllYaml` turns built-in kinds into the client's typed
 * models (unknown fields dropped, `x-kubernetes-*` renamed): loading each document under a wrapper key,
 * where it is not a Kubernetes object, keeps the tree exactly as the file has it.
 */
export const loadDocuments = (text, source) =>
  text
    .split(/^---[ \t]*$/m)
    .filter((part) => part.split("\n").some((line) => line.trim() !== "" && !line.trim().startsWith("#")))
    .map((part, index) => {
      const wrapped = `document:\n${part
        .split("\n")
        .map((line) => `  ${line}`)
        .join("\n")}`
      const [loaded] = loadAllYaml(wrapped)
      if (!isObject(loaded) || !isObject(loaded.document)) {
        fail(`${source}: document ${index + 1} is not a mapping`)
      }
      return loaded.document
    })

/** YAML text of one document, with the keys in the order they were written. */
const dumpDocument = (document) =>
  dumpYaml({ document }, { noRefs: true, lineWidth: 120 })
    .split("\n")
    .slice(1)
    .map((line) => line.replace(/^ {2}/, ""))
    .join("\n")

const podSpecsOf = (document) => {
  const spec = document.spec
  switch (document.kind) {
    case "Pod":
      return [spec]
    case "Deployment":
    case "StatefulSet":
    case "DaemonSet":
    case "ReplicaSet":
    case "Job":
      return [spec?.template?.spec]
    case "CronJob":
      return [spec?.jobTemplate?.spec?.template?.spec]
    default:
      return []
  }
}

/** `registry:5000/name:tag@sha256:...` -> name, tag, digest. */
const parseImage = (image) => {
  const [withTag, digest] = image.split("@")
  const slash = withTag.lastIndexOf("/")
  const colon = withTag.lastIndexOf(":")
  return colon > slash
    ? { name: withTag.slice(0, colon), tag: withTag.slice(colon + 1), digest }
    : { name: withTag, tag: undefined, digest }
}

const applyImages = (documents, images) => {
  for (const entry of images) {
    if (!isObject(entry) || typeof entry.name !== "string") {
      fail("every images entry needs a name")
    }
    for (const key of Object.keys(entry)) {
      if (!["name", "newName", "newTag", "digest"].includes(key)) {
        fail(`images: field ${key} is not supported`)
      }
    }
  }
  for (const document of documents) {
    for (const podSpec of podSpecsOf(document)) {
      for (const container of [...(podSpec?.containers ?? []), ...(podSpec?.initContainers ?? [])]) {
        if (typeof container.image !== "string") {
          continue
        }
        const current = parseImage(container.image)
        const entry = images.find((candidate) => candidate.name === current.name)
        if (entry === undefined) {
          continue
        }
        const name = entry.newName ?? current.name
        container.image =
          entry.digest !== undefined
            ? `${name}@${entry.digest}`
            : entry.newTag !== undefined
              ? `${name}:${entry.newTag}`
              : `${name}${current.tag === undefined ? "" : `:${current.tag}`}${current.digest === undefined ? "" : `@${current.digest}`}`
      }
    }
  }
}

const applyNamespace = (documents, namespace) => {
  for (const document of documents) {
    if (CLUSTER_SCOPED.has(document.kind)) {
      continue
    }
    // After the name, where kustomize writes it too.
    const { name, namespace: _previous, ...rest } = document.metadata ?? {}
    document.metadata = { name, namespace, ...rest }
  }
  // As kustomize does: ServiceAccount subjects of bindings follow the namespace unless they name one.
  for (const document of documents) {
    if (document.kind !== "ClusterRoleBinding" && document.kind !== "RoleBinding") {
      continue
    }
    for (const subject of document.subjects ?? []) {
      if (subject.kind === "ServiceAccount" && subject.namespace === undefined) {
        subject.namespace = namespace
      }
    }
  }
}

/** `spec.containers.[name=x].image` -> ["spec", "containers", {name: "x"}, "image"]. */
const parseFieldPath = (fieldPath) =>
  fieldPath.split(".").map((segment) => {
    const match = /^\[([^=\]]+)=([^\]]*)\]$/.exec(segment)
    return match === null ? segment : { key: match[1], value: match[2] }
  })

const step = (node, segment, fieldPath) => {
  if (typeof segment === "string") {
    if (!isObject(node) || !(segment in node)) {
      fail(`replacements: ${fieldPath} does not exist`)
    }
    return node[segment]
  }
  const found = Array.isArray(node) ? node.find((item) => item?.[segment.key] === segment.value) : undefined
  if (found === undefined) {
    fail(`replacements: ${fieldPath} selects nothing`)
  }
  return found
}

const readPath = (document, fieldPath) => {
  const segments = parseFieldPath(fieldPath)
  return segments.reduce((node, segment) => step(node, segment, fieldPath), document)
}

const writePath = (document, fieldPath, value) => {
  const segments = parseFieldPath(fieldPath)
  const last = segments.pop()
  if (typeof last !== "string") {
    fail(`replacements: ${fieldPath} must end with a field name`)
  }
  const parent = segments.reduce((node, segment) => step(node, segment, fieldPath), document)
  step(parent, last, fieldPath)
  parent[last] = value
}

const selects = (select, document) =>
  Object.entries(select).every(([key, wanted]) => {
    switch (key) {
      case "kind":
        return document.kind === wanted
      case "name":
        return document.metadata?.name === wanted
      case "namespace":
        return document.metadata?.namespace === wanted
      default:
        return fail(`replacements: selecting by ${key} is not supported`)
    }
  })

const applyReplacements = (documents, replacements) => {
  for (const replacement of replacements) {
    const { source, targets } = replacement
    const { fieldPath, ...select } = source ?? {}
    if (typeof fieldPath !== "string") {
      fail("replacements: a source needs a fieldPath")
    }
    const sources = documents.filter((document) => selects(select, document))
    if (sources.length !== 1) {
      fail(`replacements: the source ${JSON.stringify(select)} matches ${sources.length} resources`)
    }
    const value = readPath(sources[0], fieldPath)
    for (const target of targets ?? []) {
      for (const key of Object.keys(target)) {
        if (key !== "select" && key !== "fieldPaths") {
          fail(`replacements: target field ${key} is not supported`)
        }
      }
      const matched = documents.filter((document) => selects(target.select ?? {}, document))
      if (matched.length === 0) {
        fail(`replacements: the target ${JSON.stringify(target.select)} matches nothing`)
      }
      for (const document of matched) {
        for (const path of target.fieldPaths ?? []) {
          writePath(document, path, structuredClone(value))
        }
      }
    }
  }
}

/** The documents of manifest.yaml, built from kubernetes/kustomization.yaml. */
export const buildDocuments = (directory = SOURCE) => {
  const [kustomization, ...more] = loadDocuments(
    readFileSync(join(directory, "kustomization.yaml"), "utf8"),
    "kustomization.yaml",
  )
  if (kustomization === undefined || more.length > 0) {
    fail("kustomization.yaml must hold exactly one document")
  }
  for (const field of Object.keys(kustomization)) {
    if (!SUPPORTED_FIELDS.has(field)) {
      fail(`kustomization.yaml: ${field} is not supported here; use kubectl kustomize`)
    }
  }
  const documents = (kustomization.resources ?? []).flatMap((resource) => {
    const file = join(directory, resource)
    if (!statSync(file, { throwIfNoEntry: false })?.isFile()) {
      fail(`kustomization.yaml: resource ${resource} is not a file`)
    }
    return loadDocuments(readFileSync(file, "utf8"), relative(ROOT, file))
  })
  if (typeof kustomization.namespace === "string") {
    applyNamespace(documents, kustomization.namespace)
  }
  applyImages(documents, kustomization.images ?? [])
  applyReplacements(documents, kustomization.replacements ?? [])
  return documents
}

/** Formatted as `npm run lint` (Biome) wants every YAML file of the repository. */
const formatted = (text) => {
  const biome = spawnSync(BIOME, ["format", "--stdin-file-path=manifest.yaml"], {
    cwd: ROOT,
    input: text,
    encoding: "utf8",
  })
  if (biome.error !== undefined || biome.status !== 0) {
    fail(`biome format failed (npm ci installs it): ${biome.error?.message ?? biome.stderr}`)
  }
  return biome.stdout
}

/** The text of manifest.yaml. */
export const buildManifest = (directory = SOURCE) =>
  formatted(
    `${HEADER}${buildDocuments(directory)
      .map((document) => `---\n${dumpDocument(document)}`)
      .join("")}`,
  )

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)

if (isMain) {
  const manifest = buildManifest()
  const mode = process.argv[2]
  if (mode === "--stdout") {
    process.stdout.write(manifest)
  } else if (mode === "--check") {
    const current = statSync(OUTPUT, { throwIfNoEntry: false }) ? readFileSync(OUTPUT, "utf8") : ""
    if (current !== manifest) {
      process.stderr.write("manifest.yaml is not current: run node scripts/buildManifest.mjs\n")
      process.exitCode = 1
    }
  } else if (mode === undefined) {
    writeFileSync(OUTPUT, manifest)
    process.stdout.write(`wrote ${relative(process.cwd(), OUTPUT)}\n`)
  } else {
    process.stderr.write("usage: node scripts/buildManifest.mjs [--stdout | --check]\n")
    process.exitCode = 2
  }
}
