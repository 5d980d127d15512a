// Run by test/adapters/heapCap.test.ts, bundled, under the sidecar's Node flags: one pgBackRest `info`
// whose stdout is as large as the limit allows, through the plugin's own path (the PgBackRest service
// collects it, `info` parses it, the status code decodes it). Prints the number of backups it read.
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Duration, Effect, Layer, Schema } from "effect"
import { PgBackRest, PgBackRestSettings } from "../../src/adapters/pgBackRest.js"
import { PgBackRestInfo } from "../../src/domain/pgbackrestInfo.js"

const [binary = "", file = "", limit = "0"] = process.argv.slice(2)

const settings = Layer.succeed(PgBackRestSettings, {
  binary,
  path: "/usr/bin:/bin",
  home: "/tmp",
  timeout: Duration.minutes(1),
  killGrace: Duration.seconds(1),
  maxStdoutBytes: Number(limit),
})

const program = Effect.gen(function* () {
  const pgbackrest = yield* PgBackRest
  const raw = yield* pgbackrest.info({ FAKE_MODE: "stdout-file", FAKE_FILE: file })
  const stanzas = yield* Schema.decodeUnknown(PgBackRestInfo)(raw)
  process.stdout.write(`${stanzas.reduce((count, stanza) => count + stanza.backup.length, 0)}\n`)
})

Effect.runPromise(
  program.pipe(
    Effect.provide(PgBackRest.DefaultWithoutDependencies),
    Effect.provide(settings),
    Effect.provide(NodeContext.layer),
  ),
).catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`)
  process.exit(1)
})
