import * as fsSync from "node:fs"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { assert, describe, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { Effect } from "effect"
import fc from "fast-check"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { WALArchiveRequest, WALRestoreRequest, WALRestoreRequest_Mode } from "../../src/generated/wal.js"
import { CONTROL, hostileString, SHELL } from "./arbitraries.js"
import {
  checkAll,
  commandsOf,
  type Invocation,
  invocationProblems,
  LINKS,
  type LiveInstance,
  METHODS,
  NAMESPACE,
  type Outcome,
  SEGMENT,
  STANZA_REF,
  startLiveInstance,
} from "./liveInstance.js"

/**
 * Where WAL.Archive reads and WAL.Restore writes, chosen by the caller: `source_file_name` and
 * `destination_file_name` are paths. The plugin must refuse, before pgBackRest runs, anything that
 * would read or write outside PGDATA, including through a symbolic link planted in pg_wal, and no file
 * may ever appear outside PGDATA and the plugin's own directories. What PostgreSQL asks for (a file
 * directly in pg_wal, the path made absolute by the instance manager) keeps working.
 */

const cluster = Buffer.from(
  JSON.stringify({
    apiVersion: "postgresql.cnpg.io/v1",
    kind: "Cluster",
    metadata: { name: "pg", namespace: NAMESPACE },
    spec: { plugins: [{ name: PLUGIN_NAME, isWALArchiver: true, parameters: { stanzaRef: STANZA_REF } }] },
  }),
)

const WAL_NAME = /^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$/
const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const LINK_NAMES: ReadonlySet<string> = new Set(Object.values(LINKS))

const restore = (live: LiveInstance, destination: string, walName = "000000010000000000000002") =>
  attempt(
    live,
    `restore of ${JSON.stringify(walName)} to ${JSON.stringify(destination)}`,
    live.call(
      METHODS.restore,
      WALRestoreRequest.encode({
        clusterDefinition: cluster,
        sourceWalName: walName,
        destinationFileName: destination,
        parameters: {},
        mode: WALRestoreRequest_Mode.MODE_RECOVERY,
      }).finish(),
    ),
  )

const archive = (live: LiveInstance, source: string) =>
  attempt(
    live,
    `archive of ${JSON.stringify(source)}`,
    live.call(
      METHODS.archive,
      WALArchiveRequest.encode({
        clusterDefinition: cluster,
        sourceFileName: source,
        parameters: {},
      }).finish(),
    ),
  )

/** Paths built from the pieces a traversal is made of, around this instance's directories. */
const hostilePath = (live: LiveInstance): fc.Arbitrary<string> => {
  const base = fc.constantFrom(
    live.pgData,
    live.walDir,
    live.root,
    live.outside,
    live.spool,
    "/",
    "",
    "/etc",
    "~",
    "..",
  )
  const segment = fc.oneof(
    {
      arbitrary: fc.constantFrom(
        "..",
        ".",
        "",
        "pg_wal",
        "pgdata",
        "outside",
        "global",
        "pg_control",
        "archive_status",
        "etc",
        "RECOVERYXLOG",
        "000000010000000000000002",
        SEGMENT,
        ...LINK_NAMES,
      ),
      weight: 5,
    },
    { arbitrary: hostileString.filter((text) => text.length < 64), weight: 1 },
  )
  const separator = fc.constantFrom("/", "//", "/./")
  return fc
    .tuple(base, fc.array(segment, { maxLength: 4 }), separator)
    .map(([start, segments, joiner]) => [start, ...segments].join(joiner))
}

/** The planted links, and a path through the directory link: a check of the string alone lets them by. */
const throughLinks = (live: LiveInstance): fc.Arbitrary<string> =>
  fc.constantFrom(
    ...[...LINK_NAMES].map((name) => path.join(live.walDir, name)),
    path.join(live.walDir, LINKS.directory, "RECOVERYXLOG"),
    path.join(live.walDir, LINKS.directory, SEGMENT),
  )

/** Paths PostgreSQL may ask for: a plain name directly in pg_wal (not one of the planted links). */
const plainInWalDir = (live: LiveInstance, name: fc.Arbitrary<string>) =>
  name.filter((text) => !LINK_NAMES.has(text)).map((text) => path.join(live.walDir, text))

const isDirectlyIn = (live: LiveInstance, file: string, name: RegExp): boolean =>
  path.isAbsolute(file) &&
  file === path.join(live.walDir, path.basename(file)) &&
  name.test(path.basename(file)) &&
  !LINK_NAMES.has(path.basename(file))

/** One call, watched: how it ended, what pgBackRest it ran, and what files it created where. */
interface Attempt {
  readonly what: string
  readonly outcome: Outcome
  readonly invocations: ReadonlyArray<Invocation>
  readonly created: ReadonlyArray<string>
  readonly escaped: ReadonlyArray<string>
}

const attempt = (live: LiveInstance, what: string, call: Effect.Effect<Outcome>) =>
  Effect.gen(function* () {
    const { value: outcome, created, escaped } = yield* live.observe(call)
    const invocations = yield* live.takeInvocations
    return { what, outcome, invocations, created, escaped } satisfies Attempt
  })

/** Nothing outside PGDATA and the plugin's directories, nothing in PGDATA but in pg_wal, still alive. */
const nothingEscaped = (live: LiveInstance, result: Attempt) =>
  Effect.gen(function* () {
    assert.deepStrictEqual(result.escaped, [], `${result.what} created files outside`)
    assert.deepStrictEqual(
      result.created.filter((entry) => entry.startsWith("pgdata/") && !entry.startsWith("pgdata/pg_wal/")),
      [],
      `${result.what} created files in PGDATA outside pg_wal`,
    )
    assert.isTrue(yield* live.identityAnswers, "the server answers Identity")
  })

const expectRefused = (live: LiveInstance, result: Attempt, field: string) =>
  Effect.gen(function* () {
    assert.strictEqual(
      result.outcome.code,
      grpc.status.INVALID_ARGUMENT,
      `${result.what}: ${result.outcome.details}`,
    )
    assert.isTrue(result.outcome.details.startsWith(`${field}: `), result.outcome.details)
    assert.deepStrictEqual(commandsOf(result.invocations), [], `${result.what}: pgBackRest must not run`)
    yield* nothingEscaped(live, result)
  })

const expectValidRuns = (live: LiveInstance, result: Attempt) =>
  Effect.gen(function* () {
    assert.strictEqual(result.outcome.code, grpc.status.OK, `${result.what}: ${result.outcome.details}`)
    for (const invocation of result.invocations) {
      assert.deepStrictEqual(yield* invocationProblems(live, invocation), [])
    }
    yield* nothingEscaped(live, result)
  })

describe("WAL paths from a hostile caller, on a live instance", () => {
  it.scopedLive("destination_file_name: a plain file directly in pg_wal, or refused before pgBackRest", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      const destinations = fc.oneof(
        { arbitrary: hostilePath(live), weight: 5 },
        { arbitrary: throughLinks(live), weight: 1 },
        { arbitrary: plainInWalDir(live, fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,16}$/)), weight: 2 },
        { arbitrary: hostileString, weight: 2 },
      )
      yield* checkAll(
        destinations,
        (destination) =>
          Effect.gen(function* () {
            const result = yield* restore(live, destination)
            if (isDirectlyIn(live, destination, PLAIN_NAME)) {
              yield* expectValidRuns(live, result)
              assert.deepStrictEqual(
                result.invocations.map((invocation) => invocation.argv),
                [["archive-get", "000000010000000000000002", destination]],
              )
              assert.isTrue((yield* Effect.promise(() => fs.lstat(destination))).isFile())
            } else {
              yield* expectRefused(live, result, "destination_file_name")
            }
          }),
        { numRuns: 200 },
      )
    }),
  )

  it.scopedLive("source_file_name: a WAL file directly in pg_wal, or refused before pgBackRest", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      const walName = fc.oneof(
        fc.constantFrom(
          SEGMENT,
          "000000010000000000000002",
          "00000002.history",
          "000000010000000000000003.partial",
        ),
        fc.stringMatching(/^[0-9A-F]{24}$/),
      )
      const sources = fc.oneof(
        { arbitrary: hostilePath(live), weight: 5 },
        { arbitrary: throughLinks(live), weight: 1 },
        { arbitrary: plainInWalDir(live, walName), weight: 2 },
        { arbitrary: hostileString, weight: 2 },
      )
      yield* checkAll(
        sources,
        (source) =>
          Effect.gen(function* () {
            const result = yield* archive(live, source)
            if (!isDirectlyIn(live, source, WAL_NAME)) {
              yield* expectRefused(live, result, "source_file_name")
            } else if (!fsSync.existsSync(source)) {
              // Nothing to archive: refused by name, before pgBackRest (async mode would answer an assertion).
              yield* expectRefused(live, result, "source_file_name")
              assert.include(result.outcome.details, "does not exist")
            } else {
              yield* expectValidRuns(live, result)
              assert.deepStrictEqual(
                result.invocations
                  .filter((invocation) => invocation.argv[0] === "archive-push")
                  .map((i) => i.argv),
                [["archive-push", source]],
              )
            }
          }),
        { numRuns: 200 },
      )
    }),
  )

  it.scopedLive("source_wal_name with shell metacharacters or control characters is refused", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      const decorated = fc
        .tuple(
          fc.constantFrom(SEGMENT, "00000002.history", ""),
          fc.constantFrom(...SHELL, ...CONTROL, "/", "../", " "),
          fc.boolean(),
        )
        .map(([name, extra, before]) => (before ? `${extra}${name}` : `${name}${extra}`))
      const names = fc.oneof(
        decorated,
        hostileString,
        fc.constantFrom(SEGMENT, SEGMENT.toLowerCase(), `${SEGMENT}.partial`, "00000002.history"),
      )
      const destination = path.join(live.walDir, "RECOVERYXLOG")
      yield* checkAll(
        names,
        (name) =>
          Effect.gen(function* () {
            const result = yield* restore(live, destination, name)
            if (WAL_NAME.test(name)) {
              yield* expectValidRuns(live, result)
              assert.deepStrictEqual(commandsOf(result.invocations), ["archive-get"])
            } else {
              yield* expectRefused(live, result, "source_wal_name")
            }
          }),
        { numRuns: 200 },
      )
    }),
  )
})

describe("WAL path regressions (issue 8)", () => {
  it.scopedLive("WAL.Restore does not follow a directory link in pg_wal out of PGDATA", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      yield* expectRefused(
        live,
        yield* restore(live, path.join(live.walDir, LINKS.directory, "x")),
        "destination_file_name",
      )
    }),
  )

  it.scopedLive("WAL.Restore refuses a link in place of the destination, even a dangling one", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      const result = yield* restore(live, path.join(live.walDir, LINKS.destination))
      yield* expectRefused(live, result, "destination_file_name")
      assert.include(result.outcome.details, "symbolic link")
    }),
  )

  it.scopedLive("WAL.Archive refuses a WAL-named link to a file outside PGDATA", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      const result = yield* archive(live, path.join(live.walDir, LINKS.segment))
      yield* expectRefused(live, result, "source_file_name")
      assert.include(result.outcome.details, "symbolic link")
    }),
  )

  it.scopedLive(
    "WAL.Archive of a segment that does not exist names source_file_name, before pgBackRest",
    () =>
      Effect.gen(function* () {
        const live = yield* startLiveInstance()
        const result = yield* archive(live, path.join(live.walDir, "0000000100000000000000FE"))
        yield* expectRefused(live, result, "source_file_name")
        assert.include(result.outcome.details, "0000000100000000000000FE does not exist in")
      }),
  )

  it.scopedLive("traversals, absolute paths outside PGDATA and the relative %p are refused", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      for (const destination of [
        "../../etc/x",
        "/etc/x",
        path.join(live.outside, "x"),
        `${live.walDir}/../../outside/x`,
        `${live.walDir}/../global/pg_control`,
        `${live.pgData}/global/pg_control`,
        "pg_wal/RECOVERYXLOG",
        `${live.walDir}/`,
        `${live.walDir}/a\u0000b`,
      ]) {
        yield* expectRefused(live, yield* restore(live, destination), "destination_file_name")
      }
    }),
  )

  it.scopedLive("what PostgreSQL and pg_rewind ask for keeps working, absolute in PGDATA", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance()
      for (const name of ["RECOVERYXLOG", "RECOVERYHISTORY", "000000010000000000000002"]) {
        const destination = path.join(live.walDir, name)
        yield* expectValidRuns(live, yield* restore(live, destination))
        assert.include(
          yield* Effect.promise(() => fs.readFile(destination, "utf8")),
          "000000010000000000000002",
        )
      }
      const result = yield* archive(live, path.join(live.walDir, SEGMENT))
      yield* expectValidRuns(live, result)
      assert.deepStrictEqual(commandsOf(result.invocations), ["stanza-create", "archive-push"])
    }),
  )

  it.scopedLive("with walStorage (pg_wal a link to the WAL volume) restore and archive keep working", () =>
    Effect.gen(function* () {
      const live = yield* startLiveInstance({ walStorage: true })
      yield* expectValidRuns(live, yield* restore(live, path.join(live.walDir, "RECOVERYXLOG")))
      assert.isTrue(
        (yield* Effect.promise(() => fs.lstat(path.join(live.realWalDir, "RECOVERYXLOG")))).isFile(),
      )
      yield* expectValidRuns(live, yield* archive(live, path.join(live.walDir, SEGMENT)))
      // The links planted in the WAL volume are refused there too.
      yield* expectRefused(
        live,
        yield* restore(live, path.join(live.walDir, LINKS.destination)),
        "destination_file_name",
      )
    }),
  )
})
