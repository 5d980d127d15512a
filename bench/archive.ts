// `npm run bench`: archiving through the plugin as CloudNativePG drives it (one WAL.Archive RPC per
// segment over the unix socket, from a long-lived client) against bare `pgbackrest archive-push` of the
// same segments to the same kind of repositories (HTTPS S3 + posix), in sync and async mode. Prints a
// table and writes bench/report.json.
import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { createClient } from "nice-grpc"
import { WALDefinition } from "../src/generated/wal.js"
import { clusterDefinitionFromFile, socketChannel } from "../src/services/pluginClient.js"
import { makePgBackRestEnv, PostgresCluster, postgresAccount, S3Endpoint } from "../test/rig/index.js"
import { PROJECT_ROOT } from "../test/rig/paths.js"
import { preparePlugin, sidecarFor } from "../test/rig/plugin.js"
import { barePgBackRest } from "./barePgBackRest.js"

const SEGMENTS = Number(process.env.BENCH_SEGMENTS ?? "60")
const COMPRESS = process.env.BENCH_COMPRESS ?? "lz4"

const say = (line: string) => Effect.sync(() => process.stdout.write(`${line}\n`))

interface Timing {
  readonly totalMs: number
  readonly perCall: ReadonlyArray<number>
}

const summary = (timing: Timing) => {
  const sorted = [...timing.perCall].sort((a, b) => a - b)
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0
  return {
    segmentsPerSecond: (timing.perCall.length * 1000) / timing.totalMs,
    medianMs: at(0.5),
    p95Ms: at(0.95),
    totalMs: timing.totalMs,
  }
}

const rssMiB = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? "0")
  return kb / 1024
}

const run = (mode: "sync" | "async") =>
  Effect.gen(function* () {
    const account = yield* postgresAccount
    const s3 = yield* S3Endpoint.make({ bucket: `bench-${mode}` })
    const stanza = {
      compressConfig: { type: COMPRESS },
      ...(mode === "async" ? { archive: { async: true, pushQueueMax: "4GiB" }, processMax: 2 } : {}),
    }
    const dirs = yield* preparePlugin({ s3, stanza })
    // Segments are produced with archiving "paused" (empty archive_command): PostgreSQL keeps them all.
    const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: "" })
    yield* pg.psql("CREATE TABLE bench (id bigint, payload text)")
    const segments: Array<string> = []
    for (let i = 0; i < SEGMENTS; i++) {
      yield* pg.psql(`INSERT INTO bench SELECT g, md5(g::text) FROM generate_series(1, 40000) g`)
      segments.push(path.join(pg.pgdata, "pg_wal", yield* pg.switchWal()))
    }

    // Bare pgBackRest: the same options the plugin derives from the Stanza, to sibling repository paths.
    const base = {
      ...(yield* makePgBackRestEnv(pg)),
      ...S3Endpoint.pgbackrestRepoEnv(s3, 1, `${dirs.s3RepoPath}-bare`),
      PGBACKREST_REPO2_PATH: `${dirs.posixRepo}/bare`,
      PGBACKREST_STANZA: "main",
      PGBACKREST_COMPRESS_TYPE: COMPRESS,
      PGBACKREST_LOG_LEVEL_FILE: "off",
      ...(mode === "async"
        ? {
            PGBACKREST_ARCHIVE_ASYNC: "y",
            PGBACKREST_ARCHIVE_PUSH_QUEUE_MAX: "4GiB",
            PGBACKREST_PROCESS_MAX: "2",
          }
        : {}),
    }
    fs.mkdirSync(`${dirs.posixRepo}/bare`, { recursive: true })
    fs.chownSync(`${dirs.posixRepo}/bare`, account.uid, account.gid)
    yield* barePgBackRest(["stanza-create"], base, account)
    const barePush = (segment: string) => barePgBackRest(["archive-push", segment], base, account)

    // Through the plugin: a long-lived client, one WAL.Archive per segment, like the instance manager.
    const sidecar = yield* sidecarFor(dirs, pg)
    const readyStart = performance.now()
    yield* sidecar.start()
    const readyMs = performance.now() - readyStart
    const client = createClient(WALDefinition, yield* socketChannel(sidecar.socket))
    const clusterDefinition = yield* clusterDefinitionFromFile(dirs.clusterFile)
    const pluginPush = (segment: string) =>
      Effect.tryPromise(() =>
        client.archive({ clusterDefinition, sourceFileName: segment, parameters: {} }),
      ).pipe(Effect.asVoid)
    // The first segment warms both paths up (the plugin initialises its stanza there, once per layout);
    // then each segment goes through both, in alternating order, so that neither profits from a cache
    // the other warmed or pays for the machine's drift alone.
    const [first, ...rest] = segments
    if (first !== undefined) {
      yield* barePush(first)
      yield* pluginPush(first)
    }
    const bareTimes: Array<number> = []
    const pluginTimes: Array<number> = []
    const time = (effect: Effect.Effect<void, unknown>, into: Array<number>) =>
      Effect.gen(function* () {
        const started = performance.now()
        yield* effect
        into.push(performance.now() - started)
      })
    for (const [index, segment] of rest.entries()) {
      const pair = [time(barePush(segment), bareTimes), time(pluginPush(segment), pluginTimes)] as const
      yield* index % 2 === 0 ? Effect.zipRight(pair[0], pair[1]) : Effect.zipRight(pair[1], pair[0])
    }
    const total = (values: ReadonlyArray<number>) => values.reduce((a, b) => a + b, 0)
    const bare: Timing = { totalMs: total(bareTimes), perCall: bareTimes }
    const plugin: Timing = { totalMs: total(pluginTimes), perCall: pluginTimes }
    const rss = rssMiB(sidecar.pid())
    return {
      mode,
      bare: summary(bare),
      plugin: summary(plugin),
      readyMs,
      rssMiB: rss,
      segments: segments.length,
    }
  }).pipe(Effect.scoped)

const program = Effect.gen(function* () {
  yield* say(
    `archiving ${SEGMENTS} segments per mode, compression ${COMPRESS}, repositories: HTTPS S3 + posix`,
  )
  const results = []
  for (const mode of ["sync", "async"] as const) {
    const result = yield* run(mode)
    results.push(result)
    const ratio = result.bare.segmentsPerSecond / result.plugin.segmentsPerSecond
    yield* say(
      `${mode.padEnd(5)} bare: ${result.bare.segmentsPerSecond.toFixed(1)} seg/s (median ${result.bare.medianMs.toFixed(0)} ms, p95 ${result.bare.p95Ms.toFixed(0)} ms)` +
        ` | plugin: ${result.plugin.segmentsPerSecond.toFixed(1)} seg/s (median ${result.plugin.medianMs.toFixed(0)} ms, p95 ${result.plugin.p95Ms.toFixed(0)} ms)` +
        ` | ratio plugin/bare time ${ratio.toFixed(3)} | sidecar ready ${result.readyMs.toFixed(0)} ms, RSS ${result.rssMiB.toFixed(1)} MiB`,
    )
  }
  const report = {
    generatedAt: new Date().toISOString(),
    segments: SEGMENTS,
    compress: COMPRESS,
    archive: Object.fromEntries(
      results.map((r) => [
        r.mode,
        { ratio: r.bare.segmentsPerSecond / r.plugin.segmentsPerSecond, bare: r.bare, plugin: r.plugin },
      ]),
    ),
    sidecar: { readyMs: results[0]?.readyMs ?? 0, rssMiB: Math.max(...results.map((r) => r.rssMiB)) },
  }
  fs.writeFileSync(path.join(PROJECT_ROOT, "bench", "report.json"), `${JSON.stringify(report, null, 2)}\n`)
  yield* say("wrote bench/report.json")
})

NodeRuntime.runMain(program.pipe(Effect.provide(NodeContext.layer)))
