// What the local run's archive_command pays for starting a Node process per segment: `node dist/main.js
// client wal-archive` against one WAL.Archive from the long-lived client of the same sidecar, alternated
// on fresh segments; and `node dist/main.js --version`, Node and the bundle loading alone.
import * as path from "node:path"
import { Effect } from "effect"
import { postgresAccount } from "../test/rig/index.js"
import { MAIN_JS, NODE } from "../test/rig/sidecar.js"
import type { ArchiveSides } from "./archiveSides.js"
import { runAs } from "./barePgBackRest.js"
import type { CliStartup } from "./report.js"
import { median, quantile, timeInto } from "./stats.js"

/** Measures on `segments` (not archived yet), one client run or RPC each, alternating. */
export const cliStartup = (sides: ArchiveSides, pgdata: string, segments: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const account = yield* postgresAccount
    // As PostgreSQL runs archive_command: as postgres, the WAL path as %p gives it.
    const client = (segment: string) =>
      runAs(
        NODE,
        [
          MAIN_JS,
          "client",
          "wal-archive",
          "--plugin-path",
          sides.dirs.pluginDir,
          "--cluster",
          sides.dirs.clusterFile,
          "--log-level",
          "warning",
          path.join(pgdata, "pg_wal", segment),
        ],
        {},
        account,
      )
    const clientTimes: Array<number> = []
    const rpcTimes: Array<number> = []
    for (const [index, segment] of segments.entries()) {
      yield* index % 2 === 0
        ? timeInto(client(segment), clientTimes)
        : timeInto(sides.pluginPush(segment), rpcTimes)
    }
    const versionTimes: Array<number> = []
    for (let i = 0; i < Math.max(5, clientTimes.length); i++) {
      yield* timeInto(runAs(NODE, [MAIN_JS, "--version"], {}, account), versionTimes)
    }
    return {
      runs: clientTimes.length,
      clientMedianMs: median(clientTimes),
      clientP95Ms: quantile(clientTimes, 0.95),
      rpcMedianMs: median(rpcTimes),
      rpcP95Ms: quantile(rpcTimes, 0.95),
      startupMs: median(clientTimes) - median(rpcTimes),
      versionMedianMs: median(versionTimes),
    } satisfies CliStartup
  })
