import { Context, Effect, Layer, Logger } from "effect"
import { Kubernetes } from "../../src/adapters/kubernetes.js"
import { fakeApiServer, kubeConfigFor } from "./fakeApiServer.js"

/** Manifests of the objects the operator-side services read, for tests against the fake API server. */

export type Json = { [key: string]: unknown }

const s3Repository = (secret: string | undefined) => ({
  bucket: "demo",
  endpoint: "minio.minio.svc:9000",
  region: "us-east-1",
  repoPath: "/pg",
  ...(secret === undefined
    ? {}
    : {
        secretRef: {
          accessKeyId: { name: secret, key: "ACCESS_KEY_ID" },
          secretAccessKey: { name: secret, key: "ACCESS_SECRET_KEY" },
        },
      }),
})

/** A Stanza with one S3 repository (keys from `secret`) and `posix` posix repositories. */
export const stanzaObject = (
  name: string,
  options: { secret?: string; posix?: number; stanza?: string } = {},
) => ({
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name, namespace: "db" },
  spec: {
    stanzaConfiguration: {
      name: options.stanza ?? "main",
      s3Repositories: [s3Repository(options.secret)],
      posixRepositories: Array.from({ length: options.posix ?? 0 }, (_, index) => ({
        repoPath: `/nfs/${index}`,
      })),
    },
  },
})

/** A Cluster as the operator sends it: with its uid, archiving to `stanzaRef`, maybe restoring from `origin`. */
export const clusterObject = (
  options: { stanzaRef?: string; origin?: string; plugin?: boolean } = {},
): Json => ({
  apiVersion: "postgresql.cnpg.io/v1",
  kind: "Cluster",
  metadata: { name: "pg", namespace: "db", uid: "0b7c5d1e-cluster-uid", resourceVersion: "42" },
  spec: {
    instances: 3,
    plugins:
      options.plugin === false
        ? [{ name: "barman-cloud.cloudnative-pg.io", parameters: { barmanObjectName: "store" } }]
        : [
            {
              name: "pgbackrest.dalibo.com",
              isWALArchiver: true,
              parameters: { stanzaRef: options.stanzaRef ?? "stanza-a" },
            },
          ],
    externalClusters:
      options.origin === undefined
        ? []
        : [
            {
              name: "origin",
              plugin: { name: "pgbackrest.dalibo.com", parameters: { stanzaRef: options.origin } },
            },
          ],
  },
})

export const backupObject = (
  name: string,
  parameters: Record<string, string> | undefined,
  plugin = "pgbackrest.dalibo.com",
): Json => ({
  apiVersion: "postgresql.cnpg.io/v1",
  kind: "Backup",
  metadata: { name, namespace: "db", uid: `${name}-uid` },
  spec: {
    cluster: { name: "pg" },
    method: "plugin",
    pluginConfiguration: { name: plugin, ...(parameters === undefined ? {} : { parameters }) },
  },
})

export const bytes = (object: unknown): Buffer => Buffer.from(JSON.stringify(object), "utf8")

/** A fake API server, and a service built over the real client-node Kubernetes layer pointed at it. */
export const withFakeApi = <S, I>(tag: Context.Tag<I, S>, layer: Layer.Layer<I, never, Kubernetes>) =>
  Effect.gen(function* () {
    const server = yield* fakeApiServer()
    const context = yield* Layer.build(
      layer.pipe(Layer.provide(Kubernetes.fromKubeConfig(kubeConfigFor(server)))),
    )
    return { server, service: Context.get(context, tag) }
  })

/** Runs `effect` with its log messages collected into `lines`. */
export const collectingLogs = (lines: Array<string>) =>
  Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message }) => {
      lines.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
    }),
  )
