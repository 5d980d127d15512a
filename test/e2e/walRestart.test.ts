import * as fs from "node:fs"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect } from "effect"
import { Status } from "nice-grpc"
import { clusterDefinitionFromFile } from "../../src/cli/pluginClient.js"
import type { WALArchiveRequest } from "../../src/generated/wal.js"
import { makeDir, PostgresCluster, postgresAccount, runPgBackRest, S3Endpoint } from "../rig/index.js"
import { preparePlugin, sidecarFor, updateStanza } from "../rig/plugin.js"
import type { Postgres } from "../rig/postgres.js"
import {
  archivedThrough,
  archiveGet,
  fileTree,
  missingSegments,
  segmentRange,
  stanzaInitialisedCount,
  verificationEnv,
  walArchiveClient,
} from "./support.js"

/** Completes `count` segments and waits until PostgreSQL reports the last one archived; returns them. */
const archiveSegments = (pg: Postgres, count: number) =>
  Effect.gen(function* () {
    const segments: Array<string> = []
    for (let i = 0; i < count; i++) {
      segments.push(yield* pg.switchWal())
    }
    const last = segments[segments.length - 1] ?? ""
    yield* archivedThrough(pg, last, 30_000)
    return { first: segments[0] ?? "", last }
  })

layer(NodeContext.layer)(
  "WAL archiving across sidecar restarts (real PostgreSQL, pgBackRest, HTTPS S3)",
  (it) => {
    it.scoped(
      "a restarted or crashed sidecar archives on without a second stanza-create; a new repository gets one",
      () =>
        Effect.gen(function* () {
          const s3 = yield* S3Endpoint.make({ bucket: "wal-restart" })
          const dirs = yield* preparePlugin({ s3 })
          const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: dirs.archiveCommand })
          const sidecar = yield* sidecarFor(dirs, pg)
          const initialised = () => Effect.map(sidecar.log(), stanzaInitialisedCount)
          yield* sidecar.start()

          const { first } = yield* archiveSegments(pg, 3)
          assert.strictEqual(yield* initialised(), 1)

          // Graceful stop: the socket goes away with the process; the next run reads the durable record.
          const gracefulPid = sidecar.pid()
          yield* sidecar.stop()
          assert.isFalse(fs.existsSync(sidecar.socket), "a graceful stop leaves no socket behind")
          yield* sidecar.start()
          assert.notStrictEqual(sidecar.pid(), gracefulPid)
          yield* archiveSegments(pg, 3)
          assert.strictEqual(yield* initialised(), 1, "a graceful restart ran stanza-create again")

          // A crash (SIGKILL) leaves a stale socket file, which the next run must take over.
          yield* sidecar.kill()
          assert.isTrue(fs.existsSync(sidecar.socket), "SIGKILL should leave the socket file behind")
          yield* sidecar.start()
          const { last } = yield* archiveSegments(pg, 3)
          assert.strictEqual(yield* initialised(), 1, "a restart after a crash ran stanza-create again")

          const twoRepos = yield* verificationEnv(pg, s3, [
            { kind: "s3", path: dirs.s3RepoPath },
            { kind: "posix", path: dirs.posixRepo },
          ])
          const beforeChange = segmentRange(first, last)
          for (const repo of [1, 2]) {
            assert.deepStrictEqual(yield* missingSegments(twoRepos, repo, beforeChange), [], `repo ${repo}`)
          }

          // A second S3 repository on the same endpoint, another path: S3 repositories come first, so it is
          // repo 2 and the posix one becomes repo 3. Local mode reads the manifests when the sidecar
          // starts (not within STANZA_CACHE_TTL as the API would), so the change needs a restart here.
          const secondPath = `${dirs.s3RepoPath}-second`
          yield* updateStanza(dirs, (config) => {
            const s3Repositories = config.s3Repositories as ReadonlyArray<Record<string, unknown>>
            return {
              ...config,
              s3Repositories: [...s3Repositories, { ...s3Repositories[0], repoPath: secondPath }],
            }
          })
          yield* sidecar.stop()
          yield* sidecar.start()
          const added = yield* archiveSegments(pg, 2)
          assert.strictEqual(
            yield* initialised(),
            2,
            "the new repository layout needs exactly one stanza-create",
          )

          const threeRepos = yield* verificationEnv(pg, s3, [
            { kind: "s3", path: dirs.s3RepoPath },
            { kind: "s3", path: secondPath },
            { kind: "posix", path: dirs.posixRepo },
          ])
          const afterChange = segmentRange(added.first, added.last)
          for (const repo of [1, 2, 3]) {
            assert.deepStrictEqual(yield* missingSegments(threeRepos, repo, afterChange), [], `repo ${repo}`)
          }
          for (const segment of afterChange) {
            assert.strictEqual(
              yield* archiveGet(threeRepos, 2, segment, pg.baseDir),
              0,
              `${segment} in repo 2`,
            )
          }
          // Repo 2 really is the new, separate repository: it holds nothing from before it was added.
          assert.strictEqual(yield* archiveGet(threeRepos, 2, first, pg.baseDir), 1, `${first} in repo 2`)
        }),
    )
    it.scoped(
      "WAL.Archive refuses a non-empty archive for a new cluster, bad paths and bad references, writing nothing",
      () =>
        Effect.gen(function* () {
          const s3 = yield* S3Endpoint.make({ bucket: "wal-check-empty" })
          const dirs = yield* preparePlugin({ s3 })
          // An empty archive_command: PostgreSQL keeps every completed segment (.ready) and never calls
          // the plugin itself; this test makes the calls.
          const pg = yield* PostgresCluster.make({ archiveMode: "on", archiveCommand: "" })
          const used = yield* verificationEnv(pg, s3, [
            { kind: "s3", path: dirs.s3RepoPath },
            { kind: "posix", path: dirs.posixRepo },
          ])

          // Another cluster's history in the Stanza's repositories, written by pgBackRest directly.
          const foreign = yield* pg.switchWal()
          for (const args of [["stanza-create"], ["archive-push", `${pg.pgdata}/pg_wal/${foreign}`]]) {
            const result = yield* runPgBackRest(args, used)
            assert.strictEqual(result.exitCode, 0, `pgbackrest ${args.join(" ")}: ${result.stderr}`)
          }

          // A second Stanza on empty repositories, for the calls that must succeed.
          const owner = yield* postgresAccount
          const emptyPosix = yield* makeDir(`${dirs.baseDir}/posix-empty`, { owner, mode: 0o700 })
          const emptyS3 = `${dirs.s3RepoPath}-empty`
          const stanza = JSON.parse(fs.readFileSync(`${dirs.manifestsDir}/stanza.yaml`, "utf8"))
          stanza.metadata.name = "stanza-empty"
          const config = stanza.spec.stanzaConfiguration
          config.s3Repositories = [{ ...config.s3Repositories[0], repoPath: emptyS3 }]
          config.posixRepositories = [{ repoPath: emptyPosix }]
          fs.writeFileSync(`${dirs.manifestsDir}/stanza-empty.yaml`, JSON.stringify(stanza, null, 2))

          const sidecar = yield* sidecarFor(dirs, pg)
          yield* sidecar.start()
          const archive = yield* walArchiveClient(sidecar.pluginDir)
          const cluster = JSON.parse((yield* clusterDefinitionFromFile(dirs.clusterFile)).toString("utf8"))
          const withParameters = (parameters: Record<string, string>) =>
            Buffer.from(
              JSON.stringify({
                ...cluster,
                spec: {
                  ...cluster.spec,
                  plugins: cluster.spec.plugins.map((plugin: Record<string, unknown>) => ({
                    ...plugin,
                    parameters,
                  })),
                },
              }),
            )
          const segment = yield* pg.switchWal()
          const request = (overrides: Partial<WALArchiveRequest>): WALArchiveRequest => ({
            clusterDefinition: Buffer.from(JSON.stringify(cluster)),
            sourceFileName: `${pg.pgdata}/pg_wal/${segment}`,
            parameters: {},
            ...overrides,
          })

          const trees = Effect.all([fileTree(dirs.posixRepo), fileTree(emptyPosix), fileTree(s3.dataDir)])
          const before = yield* trees

          const notEmpty = yield* archive(request({ checkEmptyWalArchive: true }))
          assert.strictEqual(notEmpty.code, Status.FAILED_PRECONDITION, notEmpty.details)
          assert.match(notEmpty.details, /WAL archive of stanza main is not empty \(repositories 1, 2\)/)

          for (const bad of [
            "/etc/passwd",
            `pg_wal/${segment}`,
            `${pg.pgdata}/pg_wal/../../../../etc/passwd`,
            `${pg.pgdata}/pg_wal/./${segment}`,
            `${pg.pgdata}/postgresql.conf`,
            `${pg.pgdata}/pg_wal/archive_status`,
          ]) {
            const refused = yield* archive(request({ sourceFileName: bad }))
            assert.strictEqual(refused.code, Status.INVALID_ARGUMENT, `${bad}: ${refused.details}`)
            assert.match(refused.details, /^source_file_name: /, bad)
          }

          const noRef = yield* archive(request({ clusterDefinition: withParameters({}) }))
          assert.strictEqual(noRef.code, Status.INVALID_ARGUMENT, noRef.details)
          assert.match(noRef.details, /^spec\.plugins\[0\]\.parameters\.stanzaRef: /)

          const missing = yield* archive(
            request({ clusterDefinition: withParameters({ stanzaRef: "no-such-stanza" }) }),
          )
          assert.strictEqual(missing.code, Status.NOT_FOUND, missing.details)
          assert.match(missing.details, /no-such-stanza/)

          // Nothing reached a repository: not a byte, not a stanza-create.
          assert.deepStrictEqual(yield* trees, before)
          assert.strictEqual(stanzaInitialisedCount(yield* sidecar.log()), 0)
          for (const repo of [1, 2]) {
            assert.strictEqual(
              yield* archiveGet(used, repo, segment, pg.baseDir),
              1,
              `${segment} in repo ${repo}`,
            )
          }

          // The same segment into the Stanza whose repositories are empty is archived.
          const emptyCluster = withParameters({ stanzaRef: "stanza-empty" })
          const accepted = yield* archive(
            request({ clusterDefinition: emptyCluster, checkEmptyWalArchive: true }),
          )
          assert.strictEqual(accepted.code, Status.OK, accepted.details)
          // The flag may come again (the instance manager clears it only after a success it saw): the
          // archive now holds this cluster's own WAL, which is no reason to refuse.
          const next = yield* pg.switchWal()
          const again = yield* archive(
            request({
              clusterDefinition: emptyCluster,
              sourceFileName: `${pg.pgdata}/pg_wal/${next}`,
              checkEmptyWalArchive: true,
            }),
          )
          assert.strictEqual(again.code, Status.OK, again.details)
          const fresh = yield* verificationEnv(pg, s3, [
            { kind: "s3", path: emptyS3 },
            { kind: "posix", path: emptyPosix },
          ])
          for (const repo of [1, 2]) {
            assert.deepStrictEqual(yield* missingSegments(fresh, repo, [segment, next]), [], `repo ${repo}`)
          }
          assert.strictEqual(stanzaInitialisedCount(yield* sidecar.log()), 1)
        }),
    )
  },
)
