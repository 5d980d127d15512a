import * as fs from "node:fs"
import * as path from "node:path"
import { NodeContext } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { loadYaml } from "@kubernetes/client-node"
import { Effect } from "effect"
import { Status } from "nice-grpc"
import { PROJECT_ROOT } from "../rig/paths.js"
import { archivedThrough, startArchivingCluster, walRestoreClient } from "./support.js"

layer(NodeContext.layer)(
  "WAL restore for a replica cluster (real PostgreSQL, pgBackRest, HTTPS S3)",
  (it) => {
    it.scoped("an instance of a replica cluster reads WAL from its replica source's Stanza", () =>
      Effect.gen(function* () {
        const { dirs, pg, sidecar } = yield* startArchivingCluster({ bucket: "replica" })
        const segment = yield* pg.switchWal()
        yield* archivedThrough(pg, segment)

        // examples/cluster-replica.yaml: no Stanza of its own, `replica.source: origin` names this one.
        const replicaFile = path.join(dirs.manifestsDir, "cluster-replica.yaml")
        const replica = loadYaml<unknown>(
          fs.readFileSync(path.join(PROJECT_ROOT, "examples", "cluster-replica.yaml"), "utf8"),
        )
        fs.writeFileSync(replicaFile, JSON.stringify(replica))
        const restore = yield* walRestoreClient(sidecar.pluginDir, replicaFile)
        const destination = path.join(pg.pgdata, "pg_wal", "replica-fetch")
        const fetched = yield* restore(segment, destination)
        assert.strictEqual(fetched.code, Status.OK, fetched.details)
        assert.deepStrictEqual(
          fs.readFileSync(destination),
          fs.readFileSync(path.join(pg.pgdata, "pg_wal", segment)),
        )
        assert.strictEqual(
          (yield* restore("0000000100000000000000FE", `${destination}-2`)).code,
          Status.NOT_FOUND,
        )

        // Not a replica any more (promoted): it has no Stanza of its own, and the error names the field.
        const replicaObject = JSON.parse(fs.readFileSync(replicaFile, "utf8"))
        const promotedFile = path.join(dirs.manifestsDir, "cluster-replica-promoted.yaml")
        fs.writeFileSync(
          promotedFile,
          JSON.stringify({
            ...replicaObject,
            metadata: { name: "cluster-replica-promoted" },
            spec: { ...replicaObject.spec, replica: { enabled: false, source: "origin" } },
          }),
        )
        const refused = yield* (yield* walRestoreClient(sidecar.pluginDir, promotedFile))(
          segment,
          `${destination}-3`,
        )
        assert.strictEqual(refused.code, Status.INVALID_ARGUMENT)
        assert.include(refused.details, "spec.plugins")
        assert.isFalse(fs.existsSync(`${destination}-3`))
      }),
    )
  },
)
