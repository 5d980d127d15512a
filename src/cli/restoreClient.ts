import * as path from "node:path"
import { Effect } from "effect"
import { createClient } from "nice-grpc"
import type { CallFailed } from "../domain/errors.js"
import { RestoreJobHooksDefinition, type RestoreResponse } from "../generated/restore_job.js"
import { WALDefinition, WALRestoreRequest_Mode } from "../generated/wal.js"
import { call, clusterDefinitionFromFile, socketChannel } from "./pluginClient.js"

/**
 * `client wal-restore`: what CloudNativePG's restore_command does. The destination is made absolute
 * against the working directory (PostgreSQL runs restore_command in PGDATA). A file the archive does
 * not hold fails with NOT_FOUND, which PostgreSQL reads as "not available".
 */
export const restoreWal = (
  socketPath: string,
  clusterFile: string,
  walName: string,
  destination: string,
): Effect.Effect<void, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const clusterDefinition = yield* clusterDefinitionFromFile(clusterFile)
      const client = createClient(WALDefinition, yield* socketChannel(socketPath))
      yield* call(`unix:${socketPath}`, "cnpgi.wal.v1.WAL/Restore", (signal) =>
        client.restore(
          {
            clusterDefinition,
            sourceWalName: walName,
            destinationFileName: path.resolve(destination),
            parameters: {},
            mode: WALRestoreRequest_Mode.MODE_RECOVERY,
          },
          { signal },
        ),
      )
    }),
  )

/** `client restore`: the full-recovery Job's call; PGDATA is filled by the plugin's restore sidecar. */
export const restoreJob = (
  socketPath: string,
  clusterFile: string,
): Effect.Effect<RestoreResponse, CallFailed> =>
  Effect.scoped(
    Effect.gen(function* () {
      const clusterDefinition = yield* clusterDefinitionFromFile(clusterFile)
      const client = createClient(RestoreJobHooksDefinition, yield* socketChannel(socketPath))
      return yield* call(`unix:${socketPath}`, "cnpgi.wal.v1.RestoreJobHooks/Restore", (signal) =>
        client.restore({ clusterDefinition }, { signal }),
      )
    }),
  )
