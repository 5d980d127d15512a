// `npm run bench`, second part: how fast the instance sidecar is ready (median over several starts) and
// how much memory it holds (VmRSS of its process) at ready, then while it archives 1,000 WAL segments
// through WAL.Archive, as CloudNativePG's instance manager sends them. The segments come from a separate
// PostgreSQL initialised with 1 MiB segments (pgBackRest reads the size from pg_control), which keeps the
// run to a gigabyte of WAL. Merges its figures into bench/report.json.
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect, Option, Schema } from "effect"
import { readManifest } from "../src/cli/pluginClient.js"
import * as InstanceManager from "../src/cnpg/instanceManager.js"
import { PostgresCluster, S3Endpoint } from "../test/rig/index.js"
import { preparePlugin, sidecarFor } from "../test/rig/plugin.js"
import { mergeReport, type SidecarSection } from "./report.js"
import { fixed, knob, median, rssMiB, say } from "./stats.js"

const ARCHIVES = knob("BENCH_MEMORY_ARCHIVES", 1000)
const STARTS = knob("BENCH_SIDECAR_STARTS", 7)
const SAMPLES = 10

const ServingLine = Schema.parseJson(
  Schema.Struct({ msg: Schema.Literal("serving CNPG-I"), ts: Schema.String }),
)

/** When the sidecar last logged that it serves its socket (epoch ms), from its JSON log lines. */
const lastServingAt = (log: string): Option.Option<number> =>
  Option.fromNullable(
    log
      .split("\n")
      .filter((line) => line.includes('"msg":"serving CNPG-I"'))
      .flatMap((line) => Option.toArray(Schema.decodeUnknownOption(ServingLine)(line)))
      .map((line) => Date.parse(line.ts))
      .at(-1),
  )

/** `count` completed 1 MiB segments, each with a few hundred kB of inserts, all left for archiving. */
const makeSegments = (pg: PostgresCluster.Postgres, count: number) =>
  Effect.gen(function* () {
    yield* pg.psql("CREATE TABLE bench (id bigint, payload text)")
    yield* pg.psql(`DO $$
      BEGIN
        FOR i IN 1..${count} LOOP
          INSERT INTO bench SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
          PERFORM pg_switch_wal();
        END LOOP;
      END $$`)
    const ready = yield* pg.psql(
      "SELECT replace(name, '.ready', '') FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready' ORDER BY 1",
    )
    const segments = ready.split("\n").filter((name) => /^[0-9A-F]{24}$/.test(name))
    return segments.length >= count
      ? segments.slice(0, count)
      : yield* Effect.fail(
          new Error(`expected ${count} segments ready for archiving, found ${segments.length}`),
        )
  })

const program = Effect.gen(function* () {
  yield* say(`sidecar: ${STARTS} starts, then ${ARCHIVES} archives of 1 MiB segments (sync, lz4, S3 + posix)`)
  const s3 = yield* S3Endpoint.make({ bucket: "bench-sidecar" })
  const dirs = yield* preparePlugin({ s3, stanza: { compressConfig: { type: "lz4" } } })
  const pg = yield* PostgresCluster.make({
    archiveMode: "on",
    archiveCommand: "",
    initdbArgs: ["--wal-segsize=1"],
  })
  const segments = yield* makeSegments(pg, ARCHIVES)
  const sidecar = yield* sidecarFor(dirs, pg)

  // Ready: from the spawn to the "serving CNPG-I" line, the moment its socket accepts calls. Every
  // start but the last is stopped gracefully (SIGTERM), as a rolling restart would.
  const readyRunsMs: Array<number> = []
  for (let run = 0; run < STARTS; run++) {
    if (run > 0) yield* sidecar.stop()
    const spawnedAt = Date.now()
    yield* sidecar.start()
    const servingAt = lastServingAt(yield* sidecar.log())
    if (Option.isNone(servingAt)) return yield* Effect.fail(new Error("no serving line in the sidecar log"))
    readyRunsMs.push(servingAt.value - spawnedAt)
  }
  const rssReadyMiB = rssMiB(sidecar.pid())

  const cluster = yield* readManifest(dirs.clusterFile, "Cluster")
  const halfway = Math.floor(ARCHIVES / 2)
  const every = Math.max(1, Math.floor(ARCHIVES / SAMPLES))
  const rssSamples = [{ archives: 0, rssMiB: rssReadyMiB }]
  let rssHalfwayMiB = rssReadyMiB
  for (const [index, segment] of segments.entries()) {
    // As `manager wal-archive` does per segment: a new connection, LoadPlugin, Probe, WAL.Archive.
    yield* InstanceManager.archiveWal({
      pluginDir: sidecar.pluginDir,
      cluster,
      walPath: `${pg.pgdata}/pg_wal/${segment}`,
    }).pipe(Effect.mapError((error) => new Error(`WAL.Archive ${segment}: ${error.message}`)))
    const archives = index + 1
    if (archives === halfway) rssHalfwayMiB = rssMiB(sidecar.pid())
    if (archives % every === 0 || archives === ARCHIVES) {
      rssSamples.push({ archives, rssMiB: rssMiB(sidecar.pid()) })
    }
  }
  const rssEndMiB = rssMiB(sidecar.pid())
  const section: SidecarSection = {
    readyMs: median(readyRunsMs),
    readyRunsMs,
    rssMiB: rssEndMiB,
    rssReadyMiB,
    archives: ARCHIVES,
    walSegmentMiB: 1,
    rssHalfwayMiB,
    rssGrowthMiB: rssEndMiB - rssHalfwayMiB,
    rssSamples,
  }
  yield* say(
    `sidecar ready in ${fixed(section.readyMs)} ms (median of ${STARTS}: ${readyRunsMs.map((ms) => fixed(ms)).join(", ")})` +
      ` | RSS ${fixed(rssReadyMiB, 1)} MiB at ready, ${fixed(rssHalfwayMiB, 1)} MiB after ${halfway} archives,` +
      ` ${fixed(rssEndMiB, 1)} MiB after ${ARCHIVES} (+${fixed(section.rssGrowthMiB, 1)} MiB)`,
  )
  yield* mergeReport({ sidecar: section })
  yield* say("merged into bench/report.json")
})

NodeRuntime.runMain(program.pipe(Effect.scoped, Effect.provide(NodeContext.layer)))
