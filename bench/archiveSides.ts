// The two sides of an archiving comparison for one configuration (mode × compression): bare
// `pgbackrest archive-push` and the plugin's WAL.Archive, each to its own HTTPS S3 + posix repositories
// with the same options, both ready to push a segment of `pg`.
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { readManifest } from "../src/cli/pluginClient.js"
import * as InstanceManager from "../src/cnpg/instanceManager.js"
import { makePgBackRestEnv, type PostgresCluster, postgresAccount, S3Endpoint } from "../test/rig/index.js"
import { type PluginDirs, preparePlugin, sidecarFor } from "../test/rig/plugin.js"
import type { Sidecar } from "../test/rig/sidecar.js"
import { barePgBackRest } from "./barePgBackRest.js"

export type Mode = "sync" | "async"
export type Compress = "lz4" | "gz"

export interface ArchiveSides {
  readonly barePush: (segment: string) => Effect.Effect<void, Error>
  readonly pluginPush: (segment: string) => Effect.Effect<void, Error>
  readonly dirs: PluginDirs
  readonly sidecar: Sidecar
}

/** Sets both sides up for the scope: an S3 endpoint, the plugin's sidecar and client, bare options. */
export const archiveSides = (pg: PostgresCluster.Postgres, mode: Mode, compress: Compress) =>
  Effect.gen(function* () {
    const account = yield* postgresAccount
    const s3 = yield* S3Endpoint.make({ bucket: `bench-${mode}-${compress}` })
    const stanza = {
      compressConfig: { type: compress },
      ...(mode === "async" ? { archive: { async: true, pushQueueMax: "4GiB" }, processMax: 2 } : {}),
    }
    const dirs = yield* preparePlugin({ s3, stanza })

    // Bare pgBackRest: the same options the plugin derives from the Stanza, to sibling repository paths.
    const base = {
      ...(yield* makePgBackRestEnv(pg)),
      ...S3Endpoint.pgbackrestRepoEnv(s3, 1, `${dirs.s3RepoPath}-bare`),
      PGBACKREST_REPO2_PATH: `${dirs.posixRepo}/bare`,
      PGBACKREST_STANZA: "main",
      PGBACKREST_COMPRESS_TYPE: compress,
      PGBACKREST_LOG_LEVEL_FILE: "off",
      ...(mode === "async"
        ? {
            PGBACKREST_ARCHIVE_ASYNC: "y",
            PGBACKREST_ARCHIVE_PUSH_QUEUE_MAX: "4GiB",
            PGBACKREST_PROCESS_MAX: "2",
          }
        : {}),
    }
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(`${dirs.posixRepo}/bare`, { recursive: true })
        fs.chownSync(`${dirs.posixRepo}/bare`, account.uid, account.gid)
      },
      catch: (error) => new Error(`bare posix repository: ${String(error)}`),
    })
    yield* barePgBackRest(["stanza-create"], base, account)

    // Through the plugin as CloudNativePG's `manager wal-archive` reaches it, per segment: a new
    // connection, LoadPlugin (metadata, capabilities), Probe, then WAL.Archive (the port in src/cnpg/).
    const sidecar = yield* sidecarFor(dirs, pg)
    yield* sidecar.start()
    const cluster = yield* readManifest(dirs.clusterFile, "Cluster")
    const segmentPath = (segment: string) => path.join(pg.pgdata, "pg_wal", segment)
    return {
      barePush: (segment) => barePgBackRest(["archive-push", segmentPath(segment)], base, account),
      pluginPush: (segment) =>
        InstanceManager.archiveWal({
          pluginDir: sidecar.pluginDir,
          cluster,
          walPath: segmentPath(segment),
        }).pipe(
          Effect.mapError((error) => new Error(`WAL.Archive ${segment}: ${error.message}`)),
          Effect.asVoid,
        ),
      dirs,
      sidecar,
    } satisfies ArchiveSides
  })
