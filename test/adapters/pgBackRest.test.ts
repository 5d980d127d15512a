import * as fs from "node:fs/promises"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import {
  ConfigProvider,
  Duration,
  Effect,
  Exit,
  Fiber,
  HashMap,
  Layer,
  Logger,
  Option,
  Redacted,
  Schema,
} from "effect"
import { PgBackRest, PgBackRestSettings } from "../../src/adapters/pgBackRest.js"
import { PgBackRestFailed, PgBackRestTimeout } from "../../src/domain/errors.js"
import type { PgBackRestEnv } from "../../src/domain/pgbackrestEnv.js"
import { ByteTail, InfoJson, parseVersion, REDACTED, renderTail } from "../../src/domain/pgbackrestOutput.js"
import { tempDir } from "../support/tempDir.js"

const FAKE = path.resolve("test/fixtures/fake-pgbackrest")
// A stanza `fx` made with pgBackRest 2.45 and PostgreSQL 15 (see test/fixtures/pgbackrest-stanza/README.md).
const STANZA_FIXTURE = path.resolve("test/fixtures/pgbackrest-stanza")
const SECRET = "s3cr3t-K3y/with+chars=="
const GRACE = Duration.millis(300)

const settingsLayer = (binary: string) =>
  Layer.succeed(PgBackRestSettings, {
    binary,
    path: "/usr/bin:/bin",
    home: "/tmp",
    timeout: Duration.seconds(15),
    killGrace: GRACE,
    maxStdoutBytes: 1024 * 1024,
  })

const serviceWith = (binary: string) =>
  PgBackRest.DefaultWithoutDependencies.pipe(
    Layer.provide(settingsLayer(binary)),
    Layer.provide(NodeContext.layer),
  )

const readText = (file: string) => Effect.promise(() => fs.readFile(file, "utf8"))

/** The fake's record: its argv (program first) and its environment. */
const readRecord = (file: string) =>
  Effect.map(readText(file), (text) => {
    const split = text.indexOf("\n--\n")
    const env = new Map<string, string>()
    for (const entry of text.slice(split + 4).split("\0")) {
      const eq = entry.indexOf("=")
      if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1))
    }
    return { argv: text.slice(0, split).split("\n"), env, raw: text }
  })

/** Live (not zombie) processes of a process group, from /proc. */
const groupMembers = (pgid: number) =>
  Effect.promise(async () => {
    const members: Array<number> = []
    for (const entry of await fs.readdir("/proc")) {
      if (!/^\d+$/.test(entry)) continue
      const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8").catch(() => "")
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(pgrp) === pgid && state !== "Z" && state !== "X") members.push(Number(entry))
    }
    return members
  })

const poll = <A>(check: Effect.Effect<Option.Option<A>>, timeoutMs: number) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const result = yield* check
      if (Option.isSome(result)) return result.value
      yield* Effect.sleep(Duration.millis(20))
    }
    return yield* Effect.dieMessage(`condition not met within ${timeoutMs} ms`)
  })

/** The fake's process group once it has started its children: the group id and its members. */
const startedGroup = (pidsFile: string) =>
  poll(
    Effect.gen(function* () {
      const lines = (yield* readText(pidsFile).pipe(Effect.orElseSucceed(() => ""))).trim().split("\n")
      if (lines.length < 3) return Option.none()
      const pgid = Number(lines[0])
      const members = yield* groupMembers(pgid)
      return members.length >= 3 ? Option.some({ pgid, members }) : Option.none()
    }).pipe(Effect.catchAllDefect(() => Effect.succeed(Option.none()))),
    5_000,
  )

const groupGone = (pgid: number) =>
  poll(
    Effect.map(groupMembers(pgid), (members) => (members.length === 0 ? Option.some(true) : Option.none())),
    3_000,
  )

const withProcessEnv = (vars: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => Object.assign(process.env, vars)),
    () =>
      Effect.sync(() => {
        for (const name of Object.keys(vars)) delete process.env[name]
      }),
  )

describe("pgbackrest output helpers", () => {
  it("keeps a bounded tail of any amount of output", () => {
    const tail = new ByteTail(100)
    for (let i = 0; i < 1000; i++) tail.push(new TextEncoder().encode(`line ${i}\n`))
    tail.push(new Uint8Array(5000).fill(65))
    tail.push(new TextEncoder().encode("\nlast\n"))
    assert.strictEqual(tail.bytes().length, 100)
    assert.isTrue(tail.truncated)
    assert.isTrue(new TextDecoder().decode(tail.bytes()).endsWith("A\nlast\n"))
  })

  it("redacts secrets, including one cut by the start of the tail window", () => {
    const text = `${SECRET.slice(5)} next\nkey=${SECRET} again ${SECRET}\nend`
    const rendered = renderTail(new TextEncoder().encode(text), true, [SECRET], {
      maxChars: 1000,
      maxLines: 40,
    })
    assert.notInclude(rendered, SECRET.slice(5))
    assert.include(rendered, `key=${REDACTED} again ${REDACTED}\nend`)
    const lines = renderTail(new TextEncoder().encode("a\nb\nc\nd\n\n"), false, [], {
      maxChars: 3,
      maxLines: 3,
    })
    assert.strictEqual(lines, "c\nd")
  })

  it.effect("reads its settings from CNPG_PGBACKREST_* variables, with defaults", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) =>
        PgBackRestSettings.pipe(
          Effect.provide(PgBackRestSettings.fromConfig),
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
        )
      const defaults = yield* read({ HOME: "/controller" })
      assert.strictEqual(defaults.binary, "pgbackrest")
      assert.strictEqual(defaults.home, "/controller")
      assert.strictEqual(defaults.maxStdoutBytes, 16 * 1024 * 1024)
      assert.isTrue(Duration.equals(defaults.timeout, Duration.minutes(30)))
      const set = yield* read({
        CNPG_PGBACKREST_BINARY: "/usr/bin/pgbackrest",
        CNPG_PGBACKREST_TIMEOUT: "5 minutes",
      })
      assert.strictEqual(set.binary, "/usr/bin/pgbackrest")
      assert.strictEqual(set.home, "/tmp")
      assert.isTrue(Duration.equals(set.timeout, Duration.minutes(5)))
    }),
  )

  it("parses pgbackrest version output", () => {
    assert.deepStrictEqual(
      parseVersion("pgBackRest 2.45\n"),
      Option.some({ major: 2, minor: 45, patch: 0, text: "2.45" }),
    )
    assert.deepStrictEqual(
      parseVersion("pgBackRest 2.54.2\n"),
      Option.some({ major: 2, minor: 54, patch: 2, text: "2.54.2" }),
    )
    assert.isTrue(Option.isNone(parseVersion("ERROR: [031]: invalid option")))
  })
})

layer(serviceWith(FAKE), { excludeTestServices: true })("PgBackRest with a fake pgbackrest", (it) => {
  it.scoped("passes options and secrets through the environment only, and nothing stray", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const record = path.join(dir, "record")
      yield* withProcessEnv({ PGBACKREST_SERVICE_PORT: "tcp://10.0.0.1:8432", CNPG_TEST_STRAY: "leak" })
      const pgbackrest = yield* PgBackRest
      const env: PgBackRestEnv = {
        FAKE_RECORD: record,
        PGBACKREST_STANZA: "main",
        PGBACKREST_REPO1_S3_KEY_SECRET: Redacted.make(SECRET),
      }
      yield* pgbackrest.archivePush(env, "/var/lib/postgresql/wal/000000010000000000000001")
      const { argv, env: childEnv, raw } = yield* readRecord(record)
      assert.deepStrictEqual(argv, [FAKE, "archive-push", "/var/lib/postgresql/wal/000000010000000000000001"])
      assert.notInclude(argv.join(" "), SECRET)
      assert.strictEqual(childEnv.get("PGBACKREST_REPO1_S3_KEY_SECRET"), SECRET)
      assert.strictEqual(childEnv.get("PGBACKREST_STANZA"), "main")
      // bash itself adds PWD, SHLVL and _.
      const names = [...childEnv.keys()].filter((name) => !["PWD", "SHLVL", "_"].includes(name)).sort()
      assert.deepStrictEqual(names, [
        "FAKE_RECORD",
        "HOME",
        "LANG",
        "PATH",
        "PGBACKREST_REPO1_S3_KEY_SECRET",
        "PGBACKREST_STANZA",
      ])
      assert.strictEqual(childEnv.get("PATH"), "/usr/bin:/bin")
      assert.notInclude(raw, "CNPG_TEST_STRAY")
    }),
  )

  it.effect("keeps stdout whole", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const { stdout } = yield* pgbackrest.run("info", { env: { FAKE_MODE: "stdout-flood", FAKE_MIB: "1" } })
      assert.strictEqual(stdout.length, 1024 * 1024)
      assert.isTrue(stdout.startsWith("out\nout\n"))
    }),
  )

  it.effect("stops a command whose stdout passes the limit", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const error = yield* Effect.flip(
        pgbackrest.run("info", { env: { FAKE_MODE: "stdout-flood", FAKE_MIB: "50" } }),
      )
      assert.instanceOf(error, PgBackRestFailed)
      assert.include(error.message, "stdout passed 1048576 bytes")
    }),
  )

  it.effect("fails with the exit code and the end of stderr, secrets redacted", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const env: PgBackRestEnv = {
        FAKE_MODE: "fail",
        FAKE_EXIT: "55",
        FAKE_STDERR: `WARN: using key ${SECRET}\nERROR: [055]: unable to open missing file`,
        PGBACKREST_REPO1_CIPHER_PASS: Redacted.make(SECRET),
      }
      const error = yield* Effect.flip(pgbackrest.check(env))
      assert.deepInclude(error, {
        _tag: "PgBackRestFailed",
        command: "check",
        exitCode: 55,
        stderrTail: `WARN: using key ${REDACTED}\nERROR: [055]: unable to open missing file`,
      })
    }),
  )

  it.effect("logs a segment pgBackRest dropped (push queue full) as an error, though the push exits 0", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const lines: Array<string> = []
      const annotations: Array<unknown> = []
      const env: PgBackRestEnv = {
        FAKE_MODE: "ok",
        FAKE_STDERR:
          "P00   WARN: dropped WAL file '000000010000000000000002' because archive queue exceeded 16MB",
      }
      yield* pgbackrest.archivePush(env, "/pgdata/pg_wal/000000010000000000000002").pipe(
        Effect.provide(
          Logger.replace(
            Logger.defaultLogger,
            Logger.make(({ logLevel, message, annotations: values }) => {
              lines.push(`${logLevel.label} ${(Array.isArray(message) ? message : [message]).join(" ")}`)
              annotations.push(HashMap.get(values, "dropped").pipe(Option.getOrUndefined))
            }),
          ),
        ),
      )
      assert.strictEqual(lines.length, 1)
      assert.match(lines[0] ?? "", /^ERROR pgBackRest DROPPED WAL/)
      assert.deepStrictEqual(annotations, [["000000010000000000000002"]])
    }),
  )

  it.scoped(
    "a failed asynchronous push reports the spool's free space instead of a log file that is never written",
    () =>
      Effect.gen(function* () {
        const pgbackrest = yield* PgBackRest
        const spool = yield* tempDir("fake-spool-")
        const failure = (async: "y" | "n") =>
          Effect.flip(
            pgbackrest.archivePush(
              {
                FAKE_MODE: "fail",
                FAKE_EXIT: "82",
                FAKE_STDERR:
                  "ERROR: [082]: unable to push WAL file '000000010000000000000004' to the archive asynchronously after 60 second(s)\n" +
                  "       HINT: check the log file '/var/log/pgbackrest/main-archive-push-async.log' for errors.",
                PGBACKREST_ARCHIVE_ASYNC: async,
                PGBACKREST_SPOOL_PATH: spool,
              },
              "/pgdata/pg_wal/000000010000000000000004",
            ),
          )
        const asyncError = yield* failure("y")
        assert.strictEqual(asyncError._tag, "PgBackRestFailed")
        assert.include(asyncError.message, "unable to push WAL file '000000010000000000000004'")
        assert.notInclude(asyncError.message, "HINT: check the log file")
        assert.match(asyncError.message, new RegExp(`spool ${spool}: \\d+ bytes and \\d+ inodes free`))
        // Synchronous pushes have no spool to speak of: their output is left as pgBackRest wrote it.
        const syncError = yield* failure("n")
        assert.include(syncError.message, "HINT: check the log file")
        assert.notInclude(syncError.message, "inodes free")
      }),
  )

  it.effect("reports the end of stdout when stderr is empty", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const env = {
        FAKE_MODE: "fail-stdout",
        FAKE_EXIT: "103",
        FAKE_STDOUT: "P00  ERROR: [103]: no repository",
      }
      const error = yield* Effect.flip(pgbackrest.stanzaCreate(env))
      assert.strictEqual(error._tag, "PgBackRestFailed")
      assert.deepInclude(error, { exitCode: 103, stderrTail: "P00  ERROR: [103]: no repository" })
    }),
  )

  it.effect("reads a 50 MB stderr flood and keeps only its tail", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const env: PgBackRestEnv = {
        FAKE_MODE: "flood",
        FAKE_FLOOD: `noise with ${SECRET} inside`,
        FAKE_STDERR: "ERROR: [003]: the last words",
        PGBACKREST_REPO1_S3_KEY: Redacted.make(SECRET),
      }
      const error = yield* Effect.flip(pgbackrest.run("backup", { env }))
      assert.instanceOf(error, PgBackRestFailed)
      if (!(error instanceof PgBackRestFailed)) return
      assert.strictEqual(error.exitCode, 3)
      assert.isAtMost(error.stderrTail.length, 8 * 1024)
      assert.isAtMost(error.stderrTail.split("\n").length, 40)
      assert.isTrue(error.stderrTail.endsWith(`noise with ${REDACTED} inside\nERROR: [003]: the last words`))
      assert.notInclude(error.stderrTail, SECRET)
      assert.notInclude(error.stderrTail, SECRET.slice(0, 8))
      assert.notInclude(error.stderrTail, SECRET.slice(-8))
    }),
  )

  it.scoped("times out and kills the whole process group", () =>
    Effect.gen(function* () {
      const pids = path.join(yield* tempDir(), "pids")
      const pgbackrest = yield* PgBackRest
      const fiber = yield* Effect.fork(
        pgbackrest.run("backup", { env: { FAKE_MODE: "hang", FAKE_PIDS: pids }, timeout: "1 second" }),
      )
      const { pgid } = yield* startedGroup(pids)
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.instanceOf(error, PgBackRestTimeout)
      assert.deepInclude(error, { command: "backup", timeoutMs: 1000 })
      yield* groupGone(pgid)
    }),
  )

  it.scoped("kills with SIGKILL after the grace period a group that ignores SIGTERM", () =>
    Effect.gen(function* () {
      const pids = path.join(yield* tempDir(), "pids")
      const pgbackrest = yield* PgBackRest
      const started = Date.now()
      const fiber = yield* Effect.fork(
        pgbackrest.run("backup", {
          env: { FAKE_MODE: "hang-ignore-term", FAKE_PIDS: pids },
          timeout: "500 millis",
        }),
      )
      const { pgid } = yield* startedGroup(pids)
      const error = yield* Effect.flip(Fiber.join(fiber))
      assert.strictEqual(error._tag, "PgBackRestTimeout")
      assert.isAtLeast(Date.now() - started, 500 + Duration.toMillis(GRACE))
      yield* groupGone(pgid)
    }),
  )

  it.scoped("kills the whole process group when the call is interrupted", () =>
    Effect.gen(function* () {
      const pids = path.join(yield* tempDir(), "pids")
      const pgbackrest = yield* PgBackRest
      const fiber = yield* Effect.fork(
        pgbackrest.run("backup", { env: { FAKE_MODE: "hang", FAKE_PIDS: pids } }),
      )
      const { pgid, members } = yield* startedGroup(pids)
      assert.isAtLeast(members.length, 3)
      const exit = yield* Fiber.interrupt(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      yield* groupGone(pgid)
    }),
  )

  it.effect("closes the child's stdin", () =>
    Effect.gen(function* () {
      const { stdout } = yield* (yield* PgBackRest).run("version", {
        env: { FAKE_MODE: "read-stdin" },
        timeout: "5 seconds",
      })
      assert.strictEqual(stdout, "")
    }),
  )

  it.effect("reports a child killed by a signal as 128 + signal number", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const error = yield* Effect.flip(pgbackrest.run("backup", { env: { FAKE_MODE: "signal" } }))
      assert.deepInclude(error, { _tag: "PgBackRestFailed", exitCode: 137 })
    }),
  )

  it.effect("maps archive-get exit code 1 to a missing segment and fails on any other", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const missing = yield* pgbackrest.archiveGet(
        { FAKE_MODE: "fail", FAKE_EXIT: "1" },
        "000000010000000000000009",
        "/tmp/x",
      )
      assert.deepStrictEqual(missing, { found: false })
      const found = yield* pgbackrest.archiveGet({}, "000000010000000000000009", "/tmp/x")
      assert.deepStrictEqual(found, { found: true })
      const error = yield* Effect.flip(
        pgbackrest.archiveGet({ FAKE_MODE: "fail", FAKE_EXIT: "103" }, "000000010000000000000009", "/tmp/x"),
      )
      if (error._tag !== "PgBackRestFailed") {
        return assert.fail(`expected PgBackRestFailed, got ${error._tag}`)
      }
      assert.deepInclude(error, { command: "archive-get", exitCode: 103 })
      // An unreachable repository (49) or an async get whose worker did not deliver in time (82) says
      // nothing about the file: UNAVAILABLE, never "missing" and never an internal error.
      for (const [exit, stderr] of [
        ["49", "ERROR: [049]: unable to connect to 'localhost:9000': [111] Connection refused"],
        [
          "82",
          "ERROR: [082]: unable to get WAL file '000000010000000000000009' from the archive asynchronously after 60 second(s)",
        ],
      ] as const) {
        const transient = yield* Effect.flip(
          pgbackrest.archiveGet(
            { FAKE_MODE: "fail", FAKE_EXIT: exit, FAKE_STDERR: stderr },
            "000000010000000000000009",
            "/tmp/x",
          ),
        )
        assert.strictEqual(transient._tag, "Unavailable", `exit ${exit}`)
        assert.include(transient.message, "000000010000000000000009")
      }
      // Exit 1 while a repository could not be read is no answer: the file may be in that repository.
      const unreadable = yield* Effect.flip(
        pgbackrest.archiveGet(
          {
            FAKE_MODE: "fail",
            FAKE_EXIT: "1",
            FAKE_STDERR:
              "WARN: repo1: [HostConnectError] unable to connect to 'localhost:9000': [111] Connection refused",
          },
          "000000010000000000000009",
          "/tmp/x",
        ),
      )
      assert.strictEqual(unreadable._tag, "Unavailable")
      assert.include(unreadable.message, "HostConnectError")
    }),
  )

  it.effect("parses info JSON keeping 64-bit integers exact, and decodes the listing", () =>
    Effect.gen(function* () {
      // system-id does not fit a double: it is kept as its decimal text.
      assert.deepStrictEqual(
        yield* Schema.decode(InfoJson)('[{"db":[{"id":1,"system-id":7712159289193794070}]}]'),
        [{ db: [{ id: 1, "system-id": "7712159289193794070" }] }],
      )
      const pgbackrest = yield* PgBackRest
      const stdout =
        '[{"name":"main","status":{"code":0,"message":"ok"},"db":[{"id":1,"system-id":7712159289193794070}],' +
        '"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","min":null,"max":null}],"backup":[]}]'
      const info = yield* pgbackrest.info({ FAKE_STDOUT: stdout })
      assert.deepStrictEqual(info, [
        {
          name: "main",
          status: { code: 0, message: "ok" },
          archive: [{ database: { id: 1, "repo-key": 1 }, id: "15-1", min: null, max: null }],
          backup: [],
        },
      ])
      const notJson = yield* Effect.flip(pgbackrest.info({ FAKE_STDOUT: "stanza: main" }))
      assert.deepInclude(notJson, { _tag: "PgBackRestFailed", command: "info", exitCode: 0, reason: "other" })
      const notListing = yield* Effect.flip(pgbackrest.info({ FAKE_STDOUT: '[{"db":[]}]' }))
      assert.strictEqual(notListing._tag, "Unavailable")
    }),
  )

  it.scoped("builds the argv of backup, expire and restore; nothing secret in it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir()
      const record = path.join(dir, "record")
      const pgbackrest = yield* PgBackRest
      const argvOf = Effect.map(readRecord(record), ({ argv }) => argv.slice(1))
      yield* pgbackrest.backup(
        { FAKE_RECORD: record },
        { repository: 2, type: "incr", annotations: { "cnpg-backup-name": "b1", "cnpg-backup-uid": "u-1" } },
      )
      assert.deepStrictEqual(yield* argvOf, [
        "backup",
        "--repo=2",
        "--type=incr",
        "--annotation=cnpg-backup-name=b1",
        "--annotation=cnpg-backup-uid=u-1",
      ])
      // CloudNativePG's archive_command never contains "pgbackrest", which archive-check demands.
      assert.strictEqual((yield* readRecord(record)).env.get("PGBACKREST_ARCHIVE_CHECK"), "n")
      yield* pgbackrest.expire({ FAKE_RECORD: record }, 3)
      assert.deepStrictEqual(yield* argvOf, ["expire", "--repo=3"])
      yield* pgbackrest.restore({ FAKE_RECORD: record }, { label: "20261206-041500F", repository: 1 })
      assert.deepStrictEqual(yield* argvOf, ["restore", "--set=20261206-041500F", "--repo=1", "--type=none"])
    }),
  )

  it.effect("classifies a failure once, where it is born, into its reason", () =>
    Effect.gen(function* () {
      const pgbackrest = yield* PgBackRest
      const reasonOf = (exit: string, stderr: string) =>
        Effect.map(
          Effect.flip(pgbackrest.stanzaCreate({ FAKE_MODE: "fail", FAKE_EXIT: exit, FAKE_STDERR: stderr })),
          (error) => (error._tag === "PgBackRestFailed" ? error.reason : error._tag),
        )
      assert.strictEqual(yield* reasonOf("49", "ERROR: [049]: unable to connect"), "transient")
      assert.strictEqual(yield* reasonOf("55", "ERROR: [055]: unable to load info file"), "stanza-missing")
      assert.strictEqual(yield* reasonOf("44", "ERROR: [044]: something else"), "other")
    }),
  )
})

layer(serviceWith("/nonexistent/pgbackrest"), { excludeTestServices: true })(
  "PgBackRest without its binary",
  (it) => {
    it.effect("fails with exit code 127", () =>
      Effect.gen(function* () {
        const error = yield* Effect.flip((yield* PgBackRest).version())
        assert.deepInclude(error, { _tag: "PgBackRestFailed", command: "version", exitCode: 127 })
      }),
    )
  },
)

// The real pgBackRest 2.45, found through the PATH given to the child.
layer(serviceWith("pgbackrest"), { excludeTestServices: true })(
  "PgBackRest with the real pgbackrest",
  (it) => {
    /** A copy of the fixture stanza's repository, and temp lock/log/spool paths. */
    const stanza = (repository: "fixture" | "missing") =>
      Effect.gen(function* () {
        const dir = yield* tempDir()
        const repo = path.join(dir, "repo")
        if (repository === "fixture") {
          yield* Effect.promise(() => fs.cp(path.join(STANZA_FIXTURE, "repo"), repo, { recursive: true }))
        }
        const env: PgBackRestEnv = {
          PGBACKREST_CONFIG: "/dev/null",
          PGBACKREST_STANZA: "fx",
          PGBACKREST_PG1_PATH: path.join(STANZA_FIXTURE, "pg"),
          PGBACKREST_REPO1_PATH: repo,
          PGBACKREST_LOCK_PATH: path.join(dir, "lock"),
          PGBACKREST_LOG_PATH: path.join(dir, "log"),
          PGBACKREST_SPOOL_PATH: path.join(dir, "spool"),
          PGBACKREST_LOG_LEVEL_FILE: "off",
        }
        return { dir, env }
      })

    /** A WAL segment pgBackRest accepts: the first page header of the fixture cluster's WAL. */
    const segment = (dir: string, name: string, otherSystem = false) =>
      Effect.promise(async () => {
        const header = await fs.readFile(path.join(STANZA_FIXTURE, "wal-segment-header"))
        if (otherSystem) header[24] = (header[24] ?? 0) ^ 0xff
        const file = path.join(dir, name)
        await fs.writeFile(file, header)
        return file
      })

    it.effect("reads the version", () =>
      Effect.gen(function* () {
        const version = yield* (yield* PgBackRest).version()
        assert.strictEqual(`${version.major}.${version.minor}`, "2.45")
      }),
    )

    it.scoped("fails with pgBackRest's exit code and message when the repository does not exist", () =>
      Effect.gen(function* () {
        const { dir, env } = yield* stanza("missing")
        const error = yield* Effect.flip(
          (yield* PgBackRest).archiveGet(env, "000000010000000000000001", path.join(dir, "out")),
        )
        assert.instanceOf(error, PgBackRestFailed)
        if (!(error instanceof PgBackRestFailed)) return
        assert.strictEqual(error.exitCode, 103)
        assert.include(error.stderrTail, "ERROR: [103]: unable to find a valid repository")
        assert.include(error.stderrTail, "archive.info")
      }),
    )

    it.scoped("pushes a segment, gets it back, and reports a missing one as not found", () =>
      Effect.gen(function* () {
        const { dir, env } = yield* stanza("fixture")
        const pgbackrest = yield* PgBackRest
        yield* withProcessEnv({ PGBACKREST_SERVICE_PORT: "tcp://10.0.0.1:8432" })
        const wal = yield* segment(dir, "000000010000000000000002")
        yield* pgbackrest.archivePush(env, wal)
        const destination = path.join(dir, "restored")
        assert.deepStrictEqual(yield* pgbackrest.archiveGet(env, "000000010000000000000002", destination), {
          found: true,
        })
        const [pushed, restored] = yield* Effect.promise(() =>
          Promise.all([fs.readFile(wal), fs.readFile(destination)]),
        )
        assert.isTrue(pushed.equals(restored))
        const missing = yield* pgbackrest.archiveGet(env, "000000010000000000000003", path.join(dir, "none"))
        assert.deepStrictEqual(missing, { found: false })
        // No "environment contains invalid option 'service-port'" warning: the stray variable did not leak.
        const { stderr } = yield* pgbackrest.run("info", { env })
        assert.strictEqual(stderr, "")
      }),
    )

    it.scoped("rejects a segment of another database with exit code 44", () =>
      Effect.gen(function* () {
        const { dir, env } = yield* stanza("fixture")
        const wal = yield* segment(dir, "000000010000000000000004", true)
        const error = yield* Effect.flip((yield* PgBackRest).archivePush(env, wal))
        assert.deepInclude(error, { _tag: "PgBackRestFailed", exitCode: 44 })
        assert.include(error.message, "do not match stanza version 15, system-id 7712159289193794070")
      }),
    )

    it.scoped("decodes the real info listing; its JSON keeps the exact system id", () =>
      Effect.gen(function* () {
        const { env } = yield* stanza("fixture")
        const pgbackrest = yield* PgBackRest
        const info = yield* pgbackrest.info(env)
        assert.deepStrictEqual(
          info.map((entry) => entry.name),
          ["fx"],
        )
        const { stdout } = yield* pgbackrest.run("info", { env, args: ["--output=json"] })
        const json = yield* Schema.decode(InfoJson)(stdout)
        assert.include(JSON.stringify(json), '"system-id":"7712159289193794070"')
      }),
    )
  },
)
