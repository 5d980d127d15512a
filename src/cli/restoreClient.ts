import * as path from "node:path"
import { Effect } from "effect"
import * as InstanceManager from "../cnpg/instanceManager.js"
import type { CallFailed } from "../domain/errors.js"
import type { RestoreResponse } from "../generated/restore_job.js"
import { readManifest } from "./pluginClient.js"

/**
 * `client wal-restore`: what CloudNativePG's `manager wal-restore` does as a restore_command, through
 * the port of its plugin client: every plugin of the Cluster that can restore WAL is tried until one
 * succeeds. The destination is made absolute against the working directory (PostgreSQL runs
 * restore_command in PGDATA). Any failure fails the command, which PostgreSQL reads as "not available".
 */
export const restoreWal = (
  pluginDir: string,
  clusterFile: string,
  walName: string,
  destination: string,
): Effect.Effect<void, CallFailed> =>
  Effect.flatMap(readManifest(clusterFile, "Cluster"), (cluster) =>
    Effect.asVoid(
      InstanceManager.restoreWal({ pluginDir, cluster, walName, destination: path.resolve(destination) }),
    ),
  )

/** `client restore`: the full-recovery Job's call; PGDATA is filled by the plugin's restore sidecar. */
export const restoreJob = (
  pluginDir: string,
  clusterFile: string,
): Effect.Effect<RestoreResponse, CallFailed> =>
  Effect.flatMap(readManifest(clusterFile, "Cluster"), (cluster) =>
    InstanceManager.restoreJob({ pluginDir, cluster }),
  )
