import * as fs from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { Resources } from "../../src/adapters/kubernetesResource.js"
import { parseCommandLine } from "../../src/cli/args.js"
import { backupApiResource, decodeBackupResource } from "../../src/domain/backupResource.js"
import { decodeCluster } from "../../src/domain/cluster.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { roleFor } from "../../src/domain/rbac.js"
import { SIDECAR_NAME, sidecarPatch } from "../../src/domain/sidecar.js"
import { decodeStanza } from "../../src/domain/stanza.js"
import { exampleStanzas } from "./corpus.js"
import { at, isObject, type Json, type Manifest, metadataName, rawManifests, read } from "./support.js"

const manifest = rawManifests(read("manifest.yaml"), "manifest.yaml")
const find = (kind: string, name: string): Manifest => {
  const found = manifest.find((object) => object.kind === kind && metadataName(object) === name)
  if (found === undefined) {
    throw new Error(`manifest.yaml has no ${kind} ${name}`)
  }
  return found
}

const deployment = find("Deployment", "pgbackrest")
const service = find("Service", "pgbackrest")
const podSpec = at(deployment, "spec", "template", "spec")
const container = at(podSpec, "containers", 0)
const NAMESPACE = "cnpg-system"

const strings = (value: unknown): ReadonlyArray<string> =>
  Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : []

const certificateWithUsage = (usage: string): Manifest => {
  const found = manifest.filter(
    (object) => object.kind === "Certificate" && strings(at(object, "spec", "usages")).includes(usage),
  )
  assert.strictEqual(found.length, 1, `one Certificate for ${usage}`)
  return found[0] as Manifest
}

/** The Secret a container path is read from: the volume mounted above it. */
const secretBehind = (file: string): string | undefined => {
  const mounts = (at(container, "volumeMounts") ?? []) as ReadonlyArray<Json>
  const mount = mounts.find((candidate) => file.startsWith(`${String(at(candidate, "mountPath"))}/`))
  const volumes = (at(podSpec, "volumes") ?? []) as ReadonlyArray<Json>
  const volume = volumes.find((candidate) => at(candidate, "name") === at(mount, "name"))
  const secret = at(volume, "secret", "secretName")
  return typeof secret === "string" ? secret : undefined
}

/** The sidecar the operator-side plugin injects, as the plugin builds it. */
const injectedSidecar = (): Json => {
  const fixture = (name: string): unknown =>
    JSON.parse(fs.readFileSync(`test/fixtures/cnpg/${name}.json`, "utf8"))
  const patch = sidecarPatch(fixture("cluster-demo"), fixture("pod-cluster-demo-1"), {
    image: "x",
    logLevel: "info",
  })
  assert.isTrue(Either.isRight(patch))
  const search = (value: unknown): Json | undefined => {
    if (Array.isArray(value)) {
      return value.map(search).find((found) => found !== undefined)
    }
    if (isObject(value)) {
      return value.name === SIDECAR_NAME ? value : search(Object.values(value))
    }
    return undefined
  }
  const sidecar = search(Either.isRight(patch) ? patch.right : [])
  assert.isDefined(sidecar)
  return sidecar ?? null
}

describe("the operator-side Deployment and Service", () => {
  it("runs one replica of the operator role with the documented flags", () => {
    assert.strictEqual(at(deployment, "spec", "replicas"), 1)
    assert.strictEqual(at(container, "image"), "cnpg-plugin-pgbackrest:latest")
    const command = parseCommandLine(strings(at(container, "args")))
    assert.isTrue(Either.isRight(command))
    assert.deepInclude(Either.isRight(command) ? command.right : {}, {
      _tag: "Operator",
      serverAddress: "[::]:9090",
      serverCert: "/server/tls.crt",
      serverKey: "/server/tls.key",
      clientCert: "/client/ca.crt",
    })
  })

  it("reads its certificates from the Secrets the Service names, issued by cert-manager", () => {
    const annotations = at(service, "metadata", "annotations")
    const server = String(at(certificateWithUsage("server auth"), "spec", "secretName"))
    const client = String(at(certificateWithUsage("client auth"), "spec", "secretName"))
    assert.deepStrictEqual(annotations, {
      "cnpg.io/pluginClientSecret": client,
      "cnpg.io/pluginServerSecret": server,
      "cnpg.io/pluginPort": "9090",
    })
    assert.strictEqual(server, "pgbackrest-server-tls")
    assert.strictEqual(client, "pgbackrest-client-tls")
    assert.strictEqual(secretBehind("/server/tls.crt"), server)
    assert.strictEqual(secretBehind("/server/tls.key"), server)
    // The client CA: the CA that signed CloudNativePG's client certificate, in the client Secret.
    assert.strictEqual(secretBehind("/client/ca.crt"), client)
    // Whole Secrets: a subPath mount would never see cert-manager's renewals.
    for (const mount of (at(container, "volumeMounts") ?? []) as ReadonlyArray<Json>) {
      assert.isUndefined(at(mount, "subPath"))
    }
  })

  it("has server and client certificates from the same CA, the server one named after the Service", () => {
    const server = certificateWithUsage("server auth")
    const client = certificateWithUsage("client auth")
    assert.deepStrictEqual(at(server, "spec", "issuerRef"), at(client, "spec", "issuerRef"))
    const issuer = find("Issuer", String(at(server, "spec", "issuerRef", "name")))
    const ca = manifest.find(
      (object) =>
        object.kind === "Certificate" &&
        at(object, "spec", "secretName") === at(issuer, "spec", "ca", "secretName"),
    )
    assert.strictEqual(at(ca, "spec", "isCA"), true)
    const name = metadataName(service)
    assert.deepStrictEqual(strings(at(server, "spec", "dnsNames")), [
      name,
      `${name}.${NAMESPACE}`,
      `${name}.${NAMESPACE}.svc`,
    ])
  })

  it("is found by CloudNativePG: the plugin-name label, the port, a selector that matches the pods", () => {
    assert.strictEqual(at(service, "metadata", "labels", "cnpg.io/pluginName"), PLUGIN_NAME)
    assert.strictEqual(at(service, "metadata", "namespace"), NAMESPACE)
    assert.strictEqual(at(service, "spec", "ports", 0, "port"), 9090)
    const targetPort = at(service, "spec", "ports", 0, "targetPort")
    const port = ((at(container, "ports") ?? []) as ReadonlyArray<Json>).find(
      (candidate) => at(candidate, "name") === targetPort,
    )
    assert.strictEqual(at(port, "containerPort"), 9090)
    const labels = at(deployment, "spec", "template", "metadata", "labels")
    const selector = at(service, "spec", "selector")
    assert.isTrue(isObject(selector) && isObject(labels))
    for (const [key, value] of Object.entries(isObject(selector) ? selector : {})) {
      assert.strictEqual(isObject(labels) ? labels[key] : undefined, value, key)
    }
    assert.deepStrictEqual(at(deployment, "spec", "selector", "matchLabels"), selector)
  })

  it("gives the sidecars its own image (SIDECAR_IMAGE)", () => {
    const env = (at(container, "env") ?? []) as ReadonlyArray<Json>
    const sidecarImage = env.find((variable) => at(variable, "name") === "SIDECAR_IMAGE")
    assert.strictEqual(at(sidecarImage, "value"), at(container, "image"))
    assert.strictEqual(at(podSpec, "enableServiceLinks"), false)
  })

  it("checks its health over TCP (the exec healthcheck is for the sidecar's socket)", () => {
    for (const probe of ["readinessProbe", "livenessProbe"]) {
      assert.deepStrictEqual(at(container, probe, "tcpSocket"), { port: "grpc" }, probe)
      assert.isUndefined(at(container, probe, "exec"), probe)
    }
  })

  it("runs hardened, at least as strictly as the sidecar it injects", () => {
    const context = at(container, "securityContext")
    assert.deepInclude(context, {
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 26,
      runAsGroup: 26,
    })
    assert.deepStrictEqual(at(context, "capabilities"), { drop: ["ALL"] })
    assert.deepStrictEqual(at(context, "seccompProfile"), { type: "RuntimeDefault" })
    assert.deepInclude(at(podSpec, "securityContext"), { runAsNonRoot: true, runAsUser: 26 })
    const sidecarContext = at(injectedSidecar(), "securityContext")
    assert.isTrue(isObject(sidecarContext))
    assert.deepInclude(context, isObject(sidecarContext) ? sidecarContext : {})
    // Key files readable by the group (fsGroup 26), not by everyone.
    for (const volume of (at(podSpec, "volumes") ?? []) as ReadonlyArray<Json>) {
      if (at(volume, "secret") !== undefined) {
        assert.strictEqual(at(volume, "secret", "defaultMode"), 0o440)
      }
    }
  })
})

/** `group/resource` -> verbs, from RBAC rules (resourceNames ignored: a ClusterRole grants every name). */
const grants = (rules: unknown): ReadonlyMap<string, ReadonlySet<string>> => {
  const out = new Map<string, Set<string>>()
  for (const rule of Array.isArray(rules) ? rules : []) {
    for (const group of strings(at(rule, "apiGroups"))) {
      for (const resource of strings(at(rule, "resources"))) {
        const key = `${group}/${resource}`
        const verbs = out.get(key) ?? new Set<string>()
        for (const verb of strings(at(rule, "verbs"))) {
          verbs.add(verb)
        }
        out.set(key, verbs)
      }
    }
  }
  return out
}

const key = (resource: { readonly group: string; readonly plural: string }, subresource?: string) =>
  `${resource.group}/${resource.plural}${subresource === undefined ? "" : `/${subresource}`}`

describe("the operator-side RBAC", () => {
  const clusterRole = find("ClusterRole", "pgbackrest-plugin")
  const granted = grants(at(clusterRole, "rules"))

  /** What src/operator/reconcilerHooks.ts does with the API. */
  const ownNeeds = (): ReadonlyMap<string, ReadonlySet<string>> => {
    const backup = decodeBackupResource({ apiVersion: "postgresql.cnpg.io/v1", metadata: { name: "b" } })
    assert.isTrue(Either.isRight(backup))
    return new Map([
      // lookupStanza: kubernetes.getStanza
      [key(Resources.stanza), new Set(["get"])],
      // ensure (ensureRbac): get, then create or replace (PUT = update); never delete
      [key(Resources.role), new Set(["get", "create", "update"])],
      [key(Resources.roleBinding), new Set(["get", "create", "update"])],
      // failBackup: kubernetes.patchStatus on the Backup's status subresource
      [
        key(Either.isRight(backup) ? backupApiResource(backup.right) : { group: "?", plural: "?" }, "status"),
        new Set(["patch"]),
      ],
    ])
  }

  /** What the per-cluster Role grants (src/domain/rbac.ts): RBAC only lets the plugin grant what it holds. */
  const delegatedNeeds = (): ReadonlyMap<string, ReadonlySet<string>> => {
    const cluster = decodeCluster({ metadata: { name: "c", namespace: "db", uid: "u" } })
    assert.isTrue(Either.isRight(cluster))
    const stanzas = exampleStanzas().flatMap(({ stanza }) => {
      const decoded = decodeStanza(stanza)
      return Either.isRight(decoded) ? [decoded.right] : []
    })
    const role = Either.isRight(cluster) ? roleFor(cluster.right, stanzas) : undefined
    assert.isAtLeast(role?.rules.length ?? 0, 3, "the example Stanzas use Secrets")
    return grants(role?.rules)
  }

  it("grants what the reconciler does and what the per-cluster Role hands out", () => {
    for (const [resource, verbs] of [...ownNeeds(), ...delegatedNeeds()]) {
      for (const verb of verbs) {
        assert.isTrue(granted.get(resource)?.has(verb) ?? false, `${verb} ${resource}`)
      }
    }
    // The brief's list, spelled out.
    for (const [resource, verbs] of Object.entries({
      "rbac.authorization.k8s.io/roles": ["create", "get", "update"],
      "rbac.authorization.k8s.io/rolebindings": ["create", "get", "update"],
      "pgbackrest.dalibo.com/stanzas": ["get", "list", "watch"],
      "pgbackrest.dalibo.com/stanzas/status": ["patch", "update"],
      "/secrets": ["get", "list", "watch"],
      "postgresql.cnpg.io/backups/status": ["patch"],
    })) {
      assert.deepStrictEqual([...(granted.get(resource) ?? [])].sort(), verbs, resource)
    }
  })

  it("grants nothing more (least privilege)", () => {
    const needed = new Map<string, Set<string>>()
    for (const [resource, verbs] of [...ownNeeds(), ...delegatedNeeds()]) {
      needed.set(resource, new Set([...(needed.get(resource) ?? []), ...verbs]))
    }
    for (const [resource, verbs] of granted) {
      for (const verb of verbs) {
        assert.isTrue(needed.get(resource)?.has(verb) ?? false, `${verb} ${resource} is not needed`)
      }
    }
    for (const rule of (at(clusterRole, "rules") ?? []) as ReadonlyArray<Json>) {
      assert.notInclude(strings(at(rule, "verbs")), "*")
      assert.notInclude(strings(at(rule, "resources")), "*")
      assert.notInclude(strings(at(rule, "verbs")), "escalate")
      assert.notInclude(strings(at(rule, "verbs")), "bind")
    }
  })

  it("binds the ClusterRole to the Deployment's service account", () => {
    const binding = find("ClusterRoleBinding", "pgbackrest-plugin")
    assert.deepStrictEqual(at(binding, "roleRef"), {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "ClusterRole",
      name: metadataName(clusterRole),
    })
    const account = String(at(podSpec, "serviceAccountName"))
    assert.deepStrictEqual(at(binding, "subjects"), [
      { kind: "ServiceAccount", name: account, namespace: NAMESPACE },
    ])
    assert.strictEqual(at(find("ServiceAccount", account), "metadata", "namespace"), NAMESPACE)
  })
})
