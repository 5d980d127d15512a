import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { build } from "esbuild"
import { MAX_STDOUT_BYTES } from "../../src/adapters/pgBackRest.js"
import { NODE_FLAGS } from "../../src/cli/nodeFlags.js"

/**
 * The sidecar runs with a capped heap (NODE_FLAGS) and keeps at most MAX_STDOUT_BYTES of one
 * pgBackRest command's stdout. The largest thing it ever parses is such an `info`: this runs one of
 * that size through the plugin's own code under those flags, and checks that a heap too small for it
 * does fail, so that the first check means something.
 */
const FAKE = path.resolve("test/fixtures/fake-pgbackrest")

/** The fixture: one stanza, its backups kept as they are. */
const Fixture = Schema.Tuple(
  Schema.extend(
    Schema.Struct({ backup: Schema.NonEmptyArray(Schema.Unknown) }),
    Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  ),
)

let scratch = ""
let entry = ""
let info = ""
let backups = 0

beforeAll(async () => {
  scratch = fs.mkdtempSync("/tmp/cnpg-pgbackrest-heapcap-")
  entry = path.join(scratch, "entry.mjs")
  await build({
    entryPoints: ["test/support/heapCapEntry.ts"],
    outfile: entry,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    logLevel: "warning",
    banner: {
      js: 'import { createRequire } from "node:module"; const require = createRequire(import.meta.url);',
    },
  })
  // A real `info` (pgBackRest 2.45), its backups repeated with new labels up to just under the limit.
  const [stanza] = Schema.decodeUnknownSync(Fixture)(
    JSON.parse(fs.readFileSync("test/fixtures/pgbackrest-info/two-repositories.json", "utf8")),
  )
  const template = JSON.stringify(stanza.backup[0])
  const room = MAX_STDOUT_BYTES - JSON.stringify({ ...stanza, backup: [] }).length - 1024
  const entries: Array<string> = []
  let size = 0
  while (size + template.length + 40 < room) {
    const label = `20261125-${String(entries.length).padStart(6, "0")}F`
    const text = template.replace(/"label":"[^"]*"/, `"label":"${label}"`)
    entries.push(text)
    size += text.length + 1
  }
  backups = entries.length
  const body = JSON.stringify([{ ...stanza, backup: [] }]).replace(
    '"backup":[]',
    `"backup":[${entries.join(",")}]`,
  )
  info = path.join(scratch, "info.json")
  fs.writeFileSync(info, body)
}, 60_000)

afterAll(() => {
  if (scratch !== "") fs.rmSync(scratch, { recursive: true, force: true })
})

const runWith = (flags: ReadonlyArray<string>) =>
  spawnSync(process.execPath, [...flags, entry, FAKE, info, String(MAX_STDOUT_BYTES)], {
    encoding: "utf8",
    env: { PATH: "/usr/bin:/bin" },
    timeout: 120_000,
  })

describe("the sidecar's heap cap", () => {
  it("holds an `info` as large as the stdout limit, parsed and decoded by the plugin's code", () => {
    const size = fs.statSync(info).size
    assert.isAbove(size, MAX_STDOUT_BYTES * 0.99)
    assert.isAtMost(size, MAX_STDOUT_BYTES)
    const run = runWith(NODE_FLAGS)
    assert.strictEqual(run.status, 0, run.stderr.slice(-2000))
    assert.strictEqual(run.stdout.trim(), String(backups))
  }, 120_000)

  it("is what makes the difference: a heap capped far lower runs out of memory on the same output", () => {
    const run = runWith([
      ...NODE_FLAGS.filter((flag) => !flag.startsWith("--max-old-space-size")),
      "--max-old-space-size=24",
    ])
    assert.notStrictEqual(run.status, 0)
    assert.match(run.stderr, /heap out of memory|Allocation failed/)
  }, 120_000)
})
