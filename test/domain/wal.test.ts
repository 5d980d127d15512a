import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { archiveSource, decodeWalFileName, restoreDestination } from "../../src/domain/wal.js"

const pgData = "/var/lib/postgresql/data/pgdata"

describe("WAL file names", () => {
  it("accepts segments, partial segments, backup and timeline history files", () => {
    for (const name of [
      "000000010000000000000001",
      "00000002000000A1000000FF.partial",
      "000000010000000000000002.00000028.backup",
      "00000002.history",
    ]) {
      assert.isTrue(Either.isRight(decodeWalFileName("f", name)), name)
    }
  })

  it("rejects anything else, naming the field", () => {
    for (const name of [
      "",
      "00000001000000000000001",
      "000000010000000000000001; rm -rf /",
      "../000000010000000000000001",
      "0000000100000000000000zz",
      "x.history",
    ]) {
      const result = decodeWalFileName("source_wal_name", name)
      assert.isTrue(Either.isLeft(result) && result.left.field === "source_wal_name", name)
    }
  })
})

describe("archiveSource", () => {
  it("accepts a WAL file directly in pg_wal", () => {
    const ok = archiveSource("source_file_name", `${pgData}/pg_wal/000000010000000000000003`, pgData)
    assert.isTrue(Either.isRight(ok))
    if (Either.isRight(ok)) {
      assert.strictEqual(ok.right.path, `${pgData}/pg_wal/000000010000000000000003`)
      assert.strictEqual(ok.right.name, "000000010000000000000003")
    }
  })

  it("refuses relative, traversing, or outside paths before pgBackRest sees them", () => {
    for (const file of [
      "pg_wal/000000010000000000000003",
      `${pgData}/pg_wal/../../../../etc/000000010000000000000003`,
      `${pgData}//pg_wal/000000010000000000000003`,
      "/etc/000000010000000000000003",
      `${pgData}/base/000000010000000000000003`,
      `${pgData}/pg_wal/postgresql.conf`,
      `${pgData}/pg_wal/archive_status/000000010000000000000003`,
    ]) {
      const result = archiveSource("source_file_name", file, pgData)
      assert.isTrue(Either.isLeft(result) && result.left.field === "source_file_name", file)
    }
  })
})

describe("restoreDestination", () => {
  it("accepts a file in pg_wal, refuses anything else", () => {
    assert.deepStrictEqual(
      restoreDestination("destination_file_name", `${pgData}/pg_wal/RECOVERYXLOG`, pgData),
      Either.right(`${pgData}/pg_wal/RECOVERYXLOG`),
    )
    for (const file of [
      "pg_wal/RECOVERYXLOG",
      `${pgData}/pg_wal/../global/pg_control`,
      "/etc/cron.d/x",
      `${pgData}/base/1`,
    ]) {
      const result = restoreDestination("destination_file_name", file, pgData)
      assert.isTrue(Either.isLeft(result) && result.left.field === "destination_file_name", file)
    }
  })
})
