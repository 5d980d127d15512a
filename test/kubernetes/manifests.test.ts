import { execFileSync, spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { dumpYaml, loadAllYaml } from "@kubernetes/client-node"
import {
  at,
  canonical,
  isObject,
  kindAndName,
  type Manifest,
  metadataName,
  objectsOf,
  ROOT,
  rawDocuments,
  rawManifests,
  read,
  yamlFiles,
} from "./support.js"

/** Every apiVersion and kind the manifests and examples may use. */
const KNOWN_KINDS: Readonly<Record<string, ReadonlyArray<string>>> = {
  v1: ["List", "Namespace", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"],
  "apps/v1": ["Deployment"],
  "batch/v1": ["Job"],
  "rbac.authorization.k8s.io/v1": ["ClusterRole", "ClusterRoleBinding"],
  "apiextensions.k8s.io/v1": ["CustomResourceDefinition"],
  "cert-manager.io/v1": ["Certificate", "ClusterIssuer", "Issuer"],
  "postgresql.cnpg.io/v1": ["Backup", "Cluster", "ScheduledBackup"],
  "pgbackrest.dalibo.com/v1": ["Stanza"],
  "kustomize.config.k8s.io/v1beta1": ["Kustomization"],
}

/** Built-in kinds the Kubernetes client has typed models for: their fields can be checked. */
const BUILT_IN_GROUPS = new Set([
  "v1",
  "apps/v1",
  "batch/v1",
  "rbac.authorization.k8s.io/v1",
  "apiextensions.k8s.io/v1",
])

const CLUSTER_SCOPED = new Set([
  "CustomResourceDefinition",
  "ClusterRole",
  "ClusterRoleBinding",
  "ClusterIssuer",
  "Namespace",
])

const files = [...yamlFiles("kubernetes"), ...yamlFiles("examples")]

const kustomization = rawManifests(read("kubernetes/kustomization.yaml"), "kustomization.yaml")[0]
const resources = (at(kustomization, "resources") ?? []) as ReadonlyArray<string>

const manifestText = read("manifest.yaml")
const manifest = rawManifests(manifestText, "manifest.yaml")

describe("YAML files", () => {
  it("finds the manifests and the examples", () => {
    assert.isAtLeast(yamlFiles("kubernetes").length, 8)
    assert.isAtLeast(yamlFiles("examples").length, 12)
  })

  for (const file of files) {
    describe(file, () => {
      const text = read(file)

      it("parses with the Kubernetes client, as the raw documents do", () => {
        const typed: ReadonlyArray<unknown> = loadAllYaml(text)
        assert.strictEqual(typed.length, rawDocuments(text).length)
        assert.isAbove(typed.length, 0)
      })

      it("uses known apiVersions and kinds", () => {
        for (const object of objectsOf(rawManifests(text, file))) {
          assert.include(
            KNOWN_KINDS[object.apiVersion] ?? [],
            object.kind,
            `${file}: ${object.apiVersion} ${object.kind}`,
          )
        }
      })

      it("has only fields the Kubernetes API knows, in its built-in kinds", () => {
        // The client's typed models drop fields they do not know: a misspelt field does not survive
        // a round trip through them.
        for (const object of objectsOf(rawManifests(text, file))) {
          if (!BUILT_IN_GROUPS.has(object.apiVersion) || object.kind === "List") {
            continue
          }
          const [typed] = loadAllYaml(JSON.stringify(object))
          const [again] = rawDocuments(dumpYaml(typed))
          assert.strictEqual(
            canonical(again),
            canonical(object),
            `${file}: ${kindAndName(object)} lost fields`,
          )
        }
      })
    })
  }

  it("examples are single documents (the decoders' tests load each with loadYaml)", () => {
    for (const file of yamlFiles("examples")) {
      assert.strictEqual(rawDocuments(read(file)).length, 1, file)
    }
  })
})

describe("kubernetes/kustomization.yaml", () => {
  it("lists files that exist, and every manifest of the tree", () => {
    for (const resource of resources) {
      assert.isTrue(fs.statSync(path.join(ROOT, "kubernetes", resource)).isFile(), resource)
    }
    const listed = new Set(resources.map((resource) => path.join("kubernetes", resource)))
    for (const file of yamlFiles("kubernetes")) {
      if (file !== "kubernetes/kustomization.yaml") {
        assert.isTrue(listed.has(file), `${file} is not in kustomization.yaml`)
      }
    }
  })

  it("targets the operator's namespace and lists the CRD first", () => {
    assert.strictEqual(at(kustomization, "namespace"), "cnpg-system")
    assert.strictEqual(resources[0], "crd/stanzas.yaml")
  })

  it("has one of each required resource", () => {
    const objects = resources.flatMap((resource) => rawManifests(read(`kubernetes/${resource}`), resource))
    const names = objects.map(kindAndName)
    for (const wanted of [
      "CustomResourceDefinition/stanzas.pgbackrest.dalibo.com",
      "ServiceAccount/pgbackrest-plugin",
      "ClusterRole/pgbackrest-plugin",
      "ClusterRoleBinding/pgbackrest-plugin",
      "Deployment/pgbackrest",
      "Service/pgbackrest",
      "Certificate/pgbackrest-server",
      "Certificate/pgbackrest-client",
    ]) {
      assert.include(names, wanted)
    }
  })
})

describe("manifest.yaml", () => {
  it("is what scripts/buildManifest.mjs builds from kubernetes/ (run it after editing kubernetes/)", () => {
    const built = execFileSync(process.execPath, [path.join(ROOT, "scripts/buildManifest.mjs"), "--stdout"], {
      cwd: ROOT,
      encoding: "utf8",
    })
    assert.strictEqual(manifestText, built)
  })

  it("holds the kustomization's resources in order, in cnpg-system", () => {
    const expected = resources.flatMap((resource) =>
      rawManifests(read(`kubernetes/${resource}`), resource).map(kindAndName),
    )
    assert.deepStrictEqual(manifest.map(kindAndName), expected)
    for (const object of manifest) {
      const namespace = at(object, "metadata", "namespace")
      assert.strictEqual(
        namespace,
        CLUSTER_SCOPED.has(object.kind) ? undefined : "cnpg-system",
        kindAndName(object),
      )
    }
    const binding = manifest.find((object) => object.kind === "ClusterRoleBinding")
    assert.strictEqual(at(binding, "subjects", 0, "namespace"), "cnpg-system")
  })

  const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0
  it.skipIf(!kubectl)("means the same as `kubectl kustomize kubernetes/`", () => {
    const output = execFileSync("kubectl", ["kustomize", path.join(ROOT, "kubernetes")], { encoding: "utf8" })
    const key = (object: Manifest) =>
      `${object.kind}/${String(at(object, "metadata", "namespace"))}/${metadataName(object)}`
    const byKey = (objects: ReadonlyArray<Manifest>) =>
      Object.fromEntries(objects.map((object) => [key(object), canonical(object)]))
    const theirs = byKey(rawManifests(output, "kubectl kustomize"))
    const ours = byKey(manifest)
    assert.deepStrictEqual(Object.keys(ours).sort(), Object.keys(theirs).sort())
    for (const [name, object] of Object.entries(ours)) {
      assert.strictEqual(object, theirs[name], name)
    }
  })

  it("builds from a kustomization only with the fields the script understands", () => {
    assert.isTrue(isObject(kustomization))
    for (const field of Object.keys(kustomization ?? {})) {
      assert.include(["apiVersion", "kind", "namespace", "resources", "images", "replacements"], field)
    }
  })
})
