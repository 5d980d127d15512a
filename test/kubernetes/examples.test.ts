import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { decodeBackupParameters } from "../../src/domain/backupParameters.js"
import { decodeBackupDefinition, decodeBackupResource } from "../../src/domain/backupResource.js"
import { archiveStanzaRef, type Cluster, decodeCluster } from "../../src/domain/cluster.js"
import { referencedStanzas } from "../../src/domain/clusterStanzas.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { instancesUsePlugin } from "../../src/domain/sidecar.js"
import { decodeStanza, repositories, type Stanza } from "../../src/domain/stanza.js"
import { parseEndpoint, secretUses } from "../../src/domain/stanzaEnv.js"
import {
  at,
  type Json,
  type Manifest,
  metadataName,
  objectsOf,
  rawManifests,
  read,
  yamlFiles,
} from "./support.js"

/**
 * The examples are the manifests of the documentation: each must decode with the plugin's own
 * schemas, and together they must hang together (every Stanza, Secret, Cluster and bucket they name
 * exists), so that a user who applies them on kind gets a working setup.
 */

const files = yamlFiles("examples")
const objects: ReadonlyArray<{ readonly file: string; readonly object: Manifest }> = files.flatMap((file) =>
  objectsOf(rawManifests(read(file), file)).map((object) => ({ file, object })),
)
const ofKind = (kind: string) => objects.filter(({ object }) => object.kind === kind)
/** The examples' own objects live in the namespace kubectl picks: `default` on kind. */
const namespaceOf = (object: Manifest): string => {
  const namespace = at(object, "metadata", "namespace")
  return typeof namespace === "string" ? namespace : "default"
}

const decodedStanzas: ReadonlyMap<string, Stanza> = new Map(
  ofKind("Stanza").flatMap(({ object }) => {
    const decoded = decodeStanza(object)
    return Either.isRight(decoded) ? [[decoded.right.metadata.name, decoded.right] as const] : []
  }),
)
const decodedClusters: ReadonlyMap<string, Cluster> = new Map(
  ofKind("Cluster").flatMap(({ object }) => {
    const decoded = decodeCluster(object)
    return Either.isRight(decoded) ? [[decoded.right.metadata.name, decoded.right] as const] : []
  }),
)

const fail = (message: string): never => assert.fail(message)

describe("examples/", () => {
  it("has the documented manifests", () => {
    for (const file of [
      "secret.yaml",
      "stanza.yaml",
      "cluster.yaml",
      "cluster-restored.yaml",
      "backup.yaml",
      "backup-repo2.yaml",
      "scheduled-backup.yaml",
      "stanza-multi-repositories.yaml",
      "stanza-async.yaml",
      "stanza-encrypted.yaml",
      "cluster-pitr.yaml",
      "minio.yaml",
    ]) {
      assert.include(files, `examples/${file}`)
    }
  })

  describe("Stanzas decode with decodeStanza", () => {
    for (const { file, object } of ofKind("Stanza")) {
      it(`${file}: ${metadataName(object)}`, () => {
        const decoded = decodeStanza(object)
        if (Either.isLeft(decoded)) {
          fail(decoded.left.message)
        }
      })
    }
  })

  describe("Clusters decode with decodeCluster and name Stanzas that exist", () => {
    for (const { file, object } of ofKind("Cluster")) {
      it(`${file}: ${metadataName(object)}`, () => {
        const decoded = decodeCluster(object)
        if (Either.isLeft(decoded)) {
          return fail(decoded.left.message)
        }
        const cluster = decoded.right
        assert.isTrue(instancesUsePlugin(cluster), "the plugin's sidecar is injected")
        const references = referencedStanzas(cluster)
        assert.isNotEmpty(references)
        for (const reference of references) {
          assert.isTrue(decodedStanzas.has(reference.name), `Stanza ${reference.name} is not in examples/`)
        }
        // The sidecar takes the Cluster's pull policy: without one, a `:latest` image loaded into kind
        // is pulled again (Always), and not found.
        assert.strictEqual(at(object, "spec", "imagePullPolicy"), "IfNotPresent")
      })
    }
  })

  describe("Backups and ScheduledBackups go through the plugin with valid parameters", () => {
    for (const { file, object } of [...ofKind("Backup"), ...ofKind("ScheduledBackup")]) {
      it(`${file}: ${metadataName(object)}`, () => {
        const backup = decodeBackupResource(object)
        if (Either.isLeft(backup)) {
          return fail(backup.left.message)
        }
        assert.strictEqual(backup.right.spec.method, "plugin")
        assert.strictEqual(backup.right.spec.pluginConfiguration?.name, PLUGIN_NAME)
        // The plugin refuses to back up a standby; CloudNativePG's default target is one.
        assert.strictEqual(at(object, "spec", "target"), "primary")
        // As the instance manager sends it (the API server adds the uid).
        const definition = decodeBackupDefinition(
          new TextEncoder().encode(
            JSON.stringify({ ...object, metadata: { name: metadataName(object), uid: "0f3c" } }),
          ),
        )
        assert.isTrue(Either.isRight(definition))
        const clusterName = String(at(object, "spec", "cluster", "name"))
        const cluster = decodedClusters.get(clusterName) ?? fail(`Cluster ${clusterName} is not in examples/`)
        const stanzaRef = archiveStanzaRef(cluster)
        if (Either.isLeft(stanzaRef)) {
          return fail(stanzaRef.left.message)
        }
        const stanza = decodedStanzas.get(stanzaRef.right) ?? fail(`Stanza ${stanzaRef.right} is missing`)
        const parameters = decodeBackupParameters(
          backup.right.spec.pluginConfiguration?.parameters ?? {},
          repositories(stanza.spec.stanzaConfiguration).length,
        )
        if (Either.isLeft(parameters)) {
          fail(parameters.left.message)
        }
      })
    }

    it("schedules with six fields, seconds first", () => {
      for (const { object } of ofKind("ScheduledBackup")) {
        const schedule = String(at(object, "spec", "schedule"))
        assert.lengthOf(schedule.split(/\s+/), 6, schedule)
      }
    })

    it("backs up to the second repository in backup-repo2.yaml", () => {
      const [backup] = rawManifests(read("examples/backup-repo2.yaml"), "backup-repo2.yaml")
      assert.strictEqual(at(backup, "spec", "pluginConfiguration", "parameters", "selectedRepository"), "2")
    })
  })

  it("restores to a point in time in cluster-pitr.yaml", () => {
    const cluster = decodedClusters.get("cluster-pitr")
    assert.isString(cluster?.spec.bootstrap?.recovery?.recoveryTarget?.targetTime)
  })

  it("provides every Secret the Stanzas read, in their namespace", () => {
    const provided = new Set([
      ...ofKind("Secret").map(({ object }) => `${namespaceOf(object)}/${metadataName(object)}`),
      // cert-manager writes these.
      ...ofKind("Certificate").map(
        ({ object }) => `${namespaceOf(object)}/${String(at(object, "spec", "secretName"))}`,
      ),
    ])
    const secretKeys = new Map(
      ofKind("Secret").map(({ object }) => [
        `${namespaceOf(object)}/${metadataName(object)}`,
        Object.keys((at(object, "stringData") ?? {}) as object),
      ]),
    )
    for (const { object } of ofKind("Stanza")) {
      const stanza =
        decodedStanzas.get(metadataName(object)) ?? fail(`${metadataName(object)} does not decode`)
      for (const use of secretUses(stanza.spec.stanzaConfiguration)) {
        const secret = `${namespaceOf(object)}/${use.ref.name}`
        assert.isTrue(provided.has(secret), `${metadataName(object)}: Secret ${secret} (${use.field})`)
        const keys = secretKeys.get(secret)
        if (keys !== undefined) {
          assert.include(keys, use.ref.key, `${secret} has no key ${use.ref.key}`)
        } else {
          assert.strictEqual(use.ref.key, "ca.crt", "cert-manager Secrets hold ca.crt, tls.crt, tls.key")
        }
      }
    }
  })

  describe("examples/minio.yaml", () => {
    const minio = objectsOf(rawManifests(read("examples/minio.yaml"), "minio.yaml"))
    const find = (kind: string, name: string) =>
      minio.find((object) => object.kind === kind && metadataName(object) === name) ??
      fail(`no ${kind} ${name}`)

    it("serves the endpoint of the Stanzas, with a certificate for that name", () => {
      const service = find("Service", "minio")
      const host = `${metadataName(service)}.${namespaceOf(service)}.svc.cluster.local`
      const certificate = find("Certificate", "minio-tls")
      assert.include((at(certificate, "spec", "dnsNames") ?? []) as ReadonlyArray<string>, host)
      const port = at(service, "spec", "ports", 0, "port")
      for (const stanza of decodedStanzas.values()) {
        for (const repository of stanza.spec.stanzaConfiguration.s3Repositories) {
          assert.deepStrictEqual(parseEndpoint(repository.endpoint), { host, port: Number(port) })
          assert.strictEqual(repository.verifyTLS, true, "TLS verification stays on")
        }
      }
    })

    it("creates every bucket the Stanzas use", () => {
      const job = find("Job", "minio-buckets")
      const script = (
        (at(job, "spec", "template", "spec", "containers", 0, "command") ?? []) as ReadonlyArray<Json>
      ).join(" ")
      const created = new Set([...script.matchAll(/local\/([a-z0-9.-]+)/g)].map((match) => match[1]))
      for (const stanza of decodedStanzas.values()) {
        for (const repository of stanza.spec.stanzaConfiguration.s3Repositories) {
          assert.isTrue(created.has(repository.bucket), `bucket ${repository.bucket}`)
        }
      }
    })

    it("has MinIO's root keys in the Secret pgbackrest-s3-secret, the same as examples/secret.yaml", () => {
      const own = find("Secret", "pgbackrest-s3-secret")
      const [documented] = rawManifests(read("examples/secret.yaml"), "secret.yaml")
      assert.deepStrictEqual(at(own, "stringData"), at(documented, "stringData"))
      const env = (at(find("Deployment", "minio"), "spec", "template", "spec", "containers", 0, "env") ??
        []) as ReadonlyArray<Json>
      assert.deepStrictEqual(
        env.map((variable) => [at(variable, "name"), at(variable, "valueFrom", "secretKeyRef", "key")]),
        [
          ["MINIO_ROOT_USER", "ACCESS_KEY_ID"],
          ["MINIO_ROOT_PASSWORD", "ACCESS_SECRET_KEY"],
        ],
      )
    })

    it("pulls its images only when missing (kind may have them loaded)", () => {
      for (const object of minio) {
        for (const container of (at(object, "spec", "template", "spec", "containers") ??
          []) as ReadonlyArray<Json>) {
          assert.strictEqual(at(container, "imagePullPolicy"), "IfNotPresent")
          assert.match(String(at(container, "image")), /:RELEASE\.\d{4}-/, "a pinned release")
        }
      }
    })
  })
})
