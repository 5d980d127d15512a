import { assert, describe, it } from "@effect/vitest"
import { Cause, FiberId } from "effect"
import { Status } from "nice-grpc"
import {
  FailedPrecondition,
  InvalidRequest,
  NotFound,
  PermissionDenied,
  PgBackRestTimeout,
  type PluginError,
  Unavailable,
  Unimplemented,
} from "../../src/domain/errors.js"
import { serverErrorOf } from "../../src/grpc/handlers.js"
import { grpcStatusOf, MAX_STATUS_MESSAGE } from "../../src/grpc/status.js"
import { pgbackrestFailed } from "../support/pgbackrestFailed.js"

describe("grpcStatusOf", () => {
  const cases: ReadonlyArray<readonly [PluginError, Status, string]> = [
    [
      new InvalidRequest({
        field: "parameters.selectedRepository",
        reason: "must be between 1 and 2, got 0",
      }),
      Status.INVALID_ARGUMENT,
      "parameters.selectedRepository: must be between 1 and 2, got 0",
    ],
    [
      new NotFound({ what: "WAL segment 000000010000000000000003" }),
      Status.NOT_FOUND,
      "WAL segment 000000010000000000000003 not found",
    ],
    [
      new FailedPrecondition({ reason: "a backup of stanza main is already running" }),
      Status.FAILED_PRECONDITION,
      "a backup of stanza main is already running",
    ],
    [
      new Unavailable({ what: "Kubernetes API", reason: "connection refused" }),
      Status.UNAVAILABLE,
      "Kubernetes API unavailable: connection refused",
    ],
    [
      new Unimplemented({ rpc: "WAL.SetFirstRequired" }),
      Status.UNIMPLEMENTED,
      "WAL.SetFirstRequired is not served by this role of the plugin",
    ],
    [
      new PermissionDenied({ action: "get secrets/s3-creds in namespace db", reason: "forbidden" }),
      Status.PERMISSION_DENIED,
      "not allowed to get secrets/s3-creds in namespace db: forbidden",
    ],
    [
      new PgBackRestTimeout({ command: "archive-push", timeoutMs: 60000 }),
      Status.DEADLINE_EXCEEDED,
      "pgbackrest archive-push did not finish within 60000 ms and was stopped",
    ],
    [
      pgbackrestFailed("archive-push", 82, "ERROR: [082]: timeout\n"),
      Status.INTERNAL,
      "pgbackrest archive-push failed with exit code 82: ERROR: [082]: timeout",
    ],
    [
      pgbackrestFailed(
        "archive-push",
        104,
        "WARN: repo1: [HostConnectError] unable to connect to 'localhost:9000'\n",
      ),
      Status.UNAVAILABLE,
      "pgbackrest archive-push failed with exit code 104: WARN: repo1: [HostConnectError] unable to connect to 'localhost:9000'",
    ],
    [
      pgbackrestFailed("backup", 49, "ERROR: [049]: unable to connect\n"),
      Status.UNAVAILABLE,
      "pgbackrest backup failed with exit code 49: ERROR: [049]: unable to connect",
    ],
  ]

  for (const [error, code, message] of cases) {
    it(`maps ${error._tag} to ${Status[code]}`, () => {
      assert.deepStrictEqual(grpcStatusOf(error), { code, message })
    })
  }
})

describe("status messages", () => {
  it("are bounded, whatever the error quotes (a trailer past 64 KiB breaks a Node.js client)", () => {
    const status = grpcStatusOf(new NotFound({ what: `Stanza db/${"r".repeat(1024 * 1024)}` }))
    assert.strictEqual(status.code, Status.NOT_FOUND)
    assert.strictEqual(status.message.length <= MAX_STATUS_MESSAGE, true)
    assert.match(status.message, /^Stanza db\/r+\.\.\. \(\d+ more characters\)$/)
  })
})

describe("serverErrorOf", () => {
  it("keeps a typed failure's code and message", () => {
    const error = serverErrorOf("WAL/Restore", Cause.fail(new NotFound({ what: "WAL segment X" })))
    assert.strictEqual(error.code, Status.NOT_FOUND)
    assert.strictEqual(error.details, "WAL segment X not found")
  })

  it("reports an interrupted call as CANCELLED", () => {
    const error = serverErrorOf("WAL/Archive", Cause.interrupt(FiberId.none))
    assert.strictEqual(error.code, Status.CANCELLED)
  })

  it("reports a defect as INTERNAL without its text, which may hold anything", () => {
    const error = serverErrorOf(
      "Backup/Backup",
      Cause.die(new Error("PGBACKREST_REPO1_S3_KEY_SECRET=hunter2")),
    )
    assert.strictEqual(error.code, Status.INTERNAL)
    assert.notInclude(error.details, "hunter2")
    assert.include(error.details, "Backup/Backup")
  })
})
