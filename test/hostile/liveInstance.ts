import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as grpc from "@grpc/grpc-js"
import { ConfigProvider, Effect, Layer, Logger, LogLevel, Runtime } from "effect"
import fc from "fast-check"
import { PLUGIN_NAME, socketPath } from "../../src/domain/plugin.js"
import { GetPluginMetadataResponse } from "../../src/generated/identity.js"
import { InstanceLive } from "../../src/instance/layer.js"
import { tempDir } from "../support/tempDir.js"
import { breaksLine } from "./arbitraries.js"

/**
 * A live `instance` sidecar for hostile-input tests: the production layer (`InstanceLive`, local mode)
 * on a unix socket in a temp root, with pgBackRest replaced by a wrapper around
 * `test/fixtures/fake-pgbackrest` that records every invocation (argv NUL-separated, beside the
 * fixture's own record of the environment) and behaves like pgBackRest where the plugin depends on
 * it: `archive-get` writes the destination it is given, `info` lists the backup `backup` just took.
 * The temp root also holds a directory no request may reach (`outside/`) and symbolic links from
 * `pg_wal` into it, so a path check that only looks at the string shows up as a file written outside.
 */

const FAKE = path.resolve("test/fixtures/fake-pgbackrest")

export const STANZA_REF = "main"
export const STANZA_NAME = "main"
export const NAMESPACE = "db"
/** Label of the backup the fake lists after `backup`. */
export const BACKUP_LABEL = "20240501-100002F"

/** Names in `pg_wal` that are symbolic links out of PGDATA, made by `startLiveInstance`. */
export const LINKS = {
  /** A directory link: `pg_wal/escape/x` is `outside/x`. */
  directory: "escape",
  /** A dangling link to `outside/planted`: writing `pg_wal/RECOVERYLINK` would create that file. */
  destination: "RECOVERYLINK",
  /** A WAL-named link to a file outside: archiving it would read `outside/secret`. */
  segment: "0000000100000000000000EE",
} as const

/** A segment that exists in `pg_wal`, as a plain file. */
export const SEGMENT = "000000010000000000000001"

export const METHODS = {
  archive: "/cnpgi.wal.v1.WAL/Archive",
  restore: "/cnpgi.wal.v1.WAL/Restore",
  walCapabilities: "/cnpgi.wal.v1.WAL/GetCapabilities",
  walStatus: "/cnpgi.wal.v1.WAL/Status",
  setFirstRequired: "/cnpgi.wal.v1.WAL/SetFirstRequired",
  backup: "/cnpgi.backup.v1.Backup/Backup",
  backupCapabilities: "/cnpgi.backup.v1.Backup/GetCapabilities",
  collect: "/cnpgi.metrics.v1.Metrics/Collect",
  metadata: "/cnpgi.identity.v1.Identity/GetPluginMetadata",
} as const

/** One run of the fake: its argv (command first) and environment. */
export interface Invocation {
  readonly argv: ReadonlyArray<string>
  readonly env: ReadonlyMap<string, string>
}

/** How a raw call ended: a gRPC status code, its details, and the response bytes on success. */
export interface Outcome {
  readonly code: grpc.status
  readonly details: string
  readonly response?: Buffer
}

const wrapperScript = (records: string, stateDir: string) => `#!/bin/bash
# Wraps test/fixtures/fake-pgbackrest; see test/hostile/liveInstance.ts. The argv record is renamed into
# place when the run ends, so a reader never sees half an invocation.
id="$(date +%s%N)-$$"
part="${records}/$id.part"
printf '%s\\0' "$@" >"$part"
trap 'mv "$part" "${records}/$id.argv"' EXIT
export FAKE_RECORD="${records}/$id.env"
case "$1" in
info)
  if [ -f "${stateDir}/info.json" ]; then FAKE_STDOUT="$(cat "${stateDir}/info.json")"; else FAKE_STDOUT='[]'; fi
  export FAKE_STDOUT
  ;;
backup)
  repo=1 uid=none
  for arg in "$@"; do
    case "$arg" in
    --repo=*) repo="\${arg#--repo=}" ;;
    --annotation=cnpg-backup-uid=*) uid="\${arg#--annotation=cnpg-backup-uid=}" ;;
    esac
  done
  sed -e "s/__REPO__/$repo/g" -e "s/__UID__/$uid/" "${stateDir}/info-template.json" >"${stateDir}/info.json"
  ;;
archive-get)
  printf 'WAL %s\\n' "$2" >"$3" || exit 1
  ;;
esac
${JSON.stringify(FAKE)} "$@"
`

const infoTemplate = JSON.stringify([
  {
    name: STANZA_NAME,
    status: { code: 0, message: "ok" },
    // As after PostgreSQL archived the backup's WAL to its repository (the plugin waits for that).
    archive: [
      {
        database: { id: 1, "repo-key": "__REPO__" },
        id: "16-1",
        min: "000000010000000000000001",
        max: "000000010000000000000002",
      },
    ],
    backup: [
      {
        label: BACKUP_LABEL,
        type: "full",
        prior: null,
        timestamp: { start: 1714557602, stop: 1714557674 },
        archive: { start: "000000010000000000000002", stop: "000000010000000000000002" },
        lsn: { start: "0/2000028", stop: "0/2000138" },
        database: { id: 1, "repo-key": "__REPO__" },
        annotation: { "cnpg-backup-uid": "__UID__" },
      },
    ],
  },
  // The repository number is a number in pgBackRest's JSON: the placeholder loses its quotes.
]).replaceAll('"__REPO__"', "__REPO__")

const stanzaManifest = JSON.stringify({
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: STANZA_REF, namespace: NAMESPACE },
  spec: {
    stanzaConfiguration: {
      name: STANZA_NAME,
      posixRepositories: [{ repoPath: "/repo/one" }, { repoPath: "/repo/two" }],
    },
  },
})

/** Every path under `root`, relative; a symbolic link is listed, never followed. */
const listTree = async (root: string, prefix = ""): Promise<ReadonlyArray<string>> => {
  const entries = await fs.readdir(path.join(root, prefix), { withFileTypes: true })
  const paths: Array<string> = []
  for (const entry of entries) {
    const relative = path.join(prefix, entry.name)
    paths.push(relative)
    if (entry.isDirectory()) {
      paths.push(...(await listTree(root, relative)))
    }
  }
  return paths.sort()
}

const readInvocation = async (records: string, id: string): Promise<Invocation> => {
  const argv = (await fs.readFile(path.join(records, `${id}.argv`), "utf8")).split("\0").slice(0, -1)
  const record = await fs.readFile(path.join(records, `${id}.env`), "utf8").catch(() => "")
  const env = new Map<string, string>()
  // The fixture's record: argv lines, a "--" line, then `env -0`.
  const split = record.lastIndexOf("\n--\n")
  for (const entry of record.slice(split + 4).split("\0")) {
    const eq = entry.indexOf("=")
    if (eq > 0) {
      env.set(entry.slice(0, eq), entry.slice(eq + 1))
    }
  }
  return { argv, env }
}

/**
 * Starts the sidecar in a fresh temp root for the scope; everything is removed with it. With
 * `walStorage`, `pg_wal` is a symbolic link to a WAL volume, as CloudNativePG sets it up.
 */
export const startLiveInstance = (options: { readonly walStorage?: boolean } = {}) =>
  Effect.gen(function* () {
    const root = yield* tempDir("cnpg-pgbackrest-hostile-")
    const dir = (name: string) => path.join(root, name)
    const pgData = dir("pgdata")
    const walDir = path.join(pgData, "pg_wal")
    const realWalDir = options.walStorage === true ? dir("wal/pg_wal") : walDir
    const stateDir = dir("state")
    const records = dir("records")
    const outside = dir("outside")
    const manifests = dir("manifests")
    const wrapper = path.join(dir("bin"), "pgbackrest")
    yield* Effect.promise(async () => {
      for (const name of [
        "pgdata/global",
        "state",
        "spool",
        "run",
        "records",
        "outside",
        "bin",
        "manifests",
      ]) {
        await fs.mkdir(dir(name), { recursive: true })
      }
      await fs.mkdir(realWalDir, { recursive: true })
      if (realWalDir !== walDir) {
        await fs.symlink(realWalDir, walDir)
      }
      await fs.writeFile(path.join(realWalDir, SEGMENT), "segment")
      await fs.writeFile(path.join(pgData, "global", "pg_control"), "control")
      await fs.writeFile(path.join(outside, "secret"), "secret")
      await fs.symlink(outside, path.join(realWalDir, LINKS.directory))
      await fs.symlink(path.join(outside, "planted"), path.join(realWalDir, LINKS.destination))
      await fs.symlink(path.join(outside, "secret"), path.join(realWalDir, LINKS.segment))
      await fs.writeFile(path.join(stateDir, "info-template.json"), infoTemplate)
      await fs.writeFile(path.join(manifests, "stanza.yaml"), stanzaManifest)
      await fs.writeFile(wrapper, wrapperScript(records, stateDir), { mode: 0o755 })
    })

    const socket = socketPath(dir("plugins"))
    const config = ConfigProvider.fromMap(
      new Map([
        ["PGDATA", pgData],
        ["NAMESPACE", NAMESPACE],
        ["PGHOST", dir("socket")],
        ["CNPG_PGBACKREST_STATE_DIR", stateDir],
        ["CNPG_PGBACKREST_SPOOL_PATH", dir("spool")],
        ["CNPG_PGBACKREST_RUN_DIR", dir("run")],
        ["CNPG_PGBACKREST_WAL_VOLUME", dir("wal")],
        ["CNPG_PGBACKREST_BINARY", wrapper],
        ["CNPG_PGBACKREST_PATH", "/usr/bin:/bin"],
        ["CNPG_PGBACKREST_HOME", root],
      ]),
    )
    // Served until the test's scope closes (before the temp root, acquired first, is removed).
    yield* Layer.build(
      InstanceLive({ socketPath: socket, manifests }).pipe(
        Layer.provide(Layer.setConfigProvider(config)),
        // Every refused call logs a warning: hundreds per property. Crashes (defects) still show.
        Layer.provide(Logger.minimumLogLevel(LogLevel.Error)),
      ),
    ).pipe(Effect.orDie)

    const send = (client: grpc.Client, method: string, bytes: Uint8Array): Effect.Effect<Outcome> =>
      Effect.async<Outcome>((resume) => {
        const pending = client.makeUnaryRequest(
          method,
          (request: Buffer) => request,
          (response: Buffer) => response,
          Buffer.from(bytes),
          (error, response) => {
            resume(
              Effect.succeed(
                error === null
                  ? { code: grpc.status.OK, details: "", ...(response === undefined ? {} : { response }) }
                  : { code: error.code, details: error.details },
              ),
            )
          },
        )
        return Effect.sync(() => pending.cancel())
      })

    /** A client with a connection of its own (grpc-js shares connections between clients otherwise). */
    const client = Effect.acquireRelease(
      Effect.sync(
        () =>
          new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure(), {
            "grpc.use_local_subchannel_pool": 1,
          }),
      ),
      (client) => Effect.sync(() => client.close()),
    )

    /**
     * Sends `bytes` as the request of `method` on a connection of its own: a call that breaks its
     * connection must not fail the next one, whose answer is then the server's alone.
     */
    const call = (method: string, bytes: Uint8Array): Effect.Effect<Outcome> =>
      Effect.scoped(Effect.flatMap(client, (connected) => send(connected, method, bytes)))

    /** Invocations of the fake that ended since the last call, oldest first; forgets them. */
    const takeInvocations = Effect.promise(async () => {
      const ids = (await fs.readdir(records))
        .filter((name) => name.endsWith(".argv"))
        .map((name) => name.slice(0, -".argv".length))
        .sort()
      const invocations = await Promise.all(ids.map((id) => readInvocation(records, id)))
      for (const id of ids) {
        await fs.rm(path.join(records, `${id}.argv`), { force: true })
        await fs.rm(path.join(records, `${id}.env`), { force: true })
      }
      return invocations
    })

    const identityAnswers = call(METHODS.metadata, new Uint8Array(0)).pipe(
      Effect.map(
        (outcome) =>
          outcome.code === grpc.status.OK &&
          outcome.response !== undefined &&
          GetPluginMetadataResponse.decode(outcome.response).name === PLUGIN_NAME,
      ),
    )

    const listRoot = Effect.promise(() => listTree(root))
    // Where the plugin may write: PGDATA (and the WAL volume behind pg_wal), the spool, its own state,
    // scratch and socket directories, the fake's records, and local mode's status patches.
    const writable = ["pgdata", "spool", "state", "run", "records", "plugins", "manifests/.status"]
    if (options.walStorage === true) {
      writable.push("wal")
    }
    const isWritable = (entry: string) =>
      writable.some((allowed) => entry === allowed || entry.startsWith(`${allowed}/`))

    /**
     * Runs `effect` and reports the paths (relative to the root) it created, and those of them outside
     * where the plugin may write. Those are removed again, so that one run's escape does not show up
     * in the next (fast-check shrinks by running again).
     */
    const observe = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      Effect.gen(function* () {
        const before = new Set(yield* listRoot)
        const value = yield* effect
        const created = (yield* listRoot).filter((entry) => !before.has(entry))
        const escaped = created.filter((entry) => !isWritable(entry))
        yield* Effect.promise(async () => {
          for (const entry of [...escaped].reverse()) {
            await fs.rm(path.join(root, entry), { recursive: true, force: true })
          }
        })
        return { value, created, escaped }
      })
    return {
      root,
      pgData,
      walDir,
      realWalDir,
      spool: dir("spool"),
      outside,
      client,
      send,
      call,
      takeInvocations,
      observe,
      listRoot,
      identityAnswers,
    }
  })

export type LiveInstance = Effect.Effect.Success<ReturnType<typeof startLiveInstance>>

// ---------------------------------------------------------------------------------------------------
// What pgBackRest may be run with: each argument checked against what the plugin validates.

const WAL_NAME = /^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$/
const PLAIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const OPTION_NAME = /^PGBACKREST_[A-Z0-9_]+$/
/** What the child environment holds besides options: the plugin's base, bash's own, the fake's. */
const NOT_OPTIONS = new Set([
  "PATH",
  "HOME",
  "LANG",
  "PWD",
  "OLDPWD",
  "SHLVL",
  "_",
  "FAKE_RECORD",
  "FAKE_STDOUT",
])

const isLink = (file: string) =>
  fs.lstat(file).then(
    (stat) => stat.isSymbolicLink(),
    () => false,
  )

/** Problems with one invocation; none when every argument is one the plugin has validated. */
export const invocationProblems = (live: LiveInstance, invocation: Invocation) =>
  Effect.promise(async (): Promise<ReadonlyArray<string>> => {
    const problems: Array<string> = []
    const [command, ...args] = invocation.argv
    const expect = (ok: boolean, what: string) => {
      if (!ok) {
        problems.push(`${what}: ${JSON.stringify(invocation.argv)}`)
      }
    }
    const inWalDir = async (file: string | undefined, name: RegExp) =>
      file !== undefined &&
      file === path.join(live.walDir, path.basename(file)) &&
      name.test(path.basename(file)) &&
      !(await isLink(file))
    switch (command) {
      case "stanza-create":
        expect(args.length === 0, "stanza-create takes no argument")
        break
      case "archive-push":
        expect(
          args.length === 1 && (await inWalDir(args[0], WAL_NAME)),
          "archive-push of a WAL file in pg_wal",
        )
        break
      case "archive-get":
        expect(
          args.length === 2 && WAL_NAME.test(args[0] ?? "") && (await inWalDir(args[1], PLAIN_NAME)),
          "archive-get of a WAL name into a plain file in pg_wal",
        )
        break
      case "info":
        expect(args.length === 1 && args[0] === "--output=json", "info --output=json")
        break
      case "backup":
        expect(
          args.length === 5 &&
            /^--repo=[12]$/.test(args[0] ?? "") &&
            /^--type=(full|diff|incr)$/.test(args[1] ?? "") &&
            /^--annotation=cnpg-backup-name=[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(args[2] ?? "") &&
            /^--annotation=cnpg-backup-uid=[A-Za-z0-9-]{1,64}$/.test(args[3] ?? "") &&
            (args[4] ?? "").startsWith("--annotation=cnpg-cluster="),
          "backup of a valid repository, type, name and uid",
        )
        break
      case "expire":
        expect(args.length === 1 && /^--repo=[12]$/.test(args[0] ?? ""), "expire of a valid repository")
        break
      default:
        expect(false, "an unexpected command")
    }
    expect(!invocation.argv.some(breaksLine), "an argument with a newline or NUL")
    expect(invocation.env.get("PGBACKREST_STANZA") === STANZA_NAME, "the Stanza's name")
    expect(invocation.env.get("PGBACKREST_PG1_PATH") === live.pgData, "PGDATA")
    for (const [name, value] of invocation.env) {
      if (!NOT_OPTIONS.has(name)) {
        expect(OPTION_NAME.test(name), `an environment variable ${name}`)
        expect(!breaksLine(value), `a newline or NUL in ${name}`)
      }
    }
    return problems
  })

/** Commands of the invocations, for assertions about which ran. */
export const commandsOf = (invocations: ReadonlyArray<Invocation>): ReadonlyArray<string> =>
  invocations.map((invocation) => invocation.argv[0] ?? "")

/**
 * Runs `check` for every value fast-check draws, on the test's runtime (fast-check drives promises).
 * Failures print the seed and the shrunk counterexample.
 */
export const checkAll = <A>(
  arbitrary: fc.Arbitrary<A>,
  check: (value: A) => Effect.Effect<void>,
  parameters: fc.Parameters<[A]> = {},
) =>
  Effect.gen(function* () {
    const run = Runtime.runPromise(yield* Effect.runtime<never>())
    yield* Effect.promise(() =>
      fc.assert(
        fc.asyncProperty(arbitrary, (value) => run(check(value))),
        parameters,
      ),
    )
  })
