import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { archiveSource, decodeWalFileName, restoreDestination } from "../../src/domain/walSegment.js"

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
      // path.basename ignores a trailing slash: this is a directory, not the segment.
      `${pgData}/pg_wal/000000010000000000000003/`,
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
      // Found by the hostile-input property: with a trailing slash, dirname and basename made the
      // archive_status directory pass as a file named archive_status.
      `${pgData}/pg_wal/archive_status/`,
      `${pgData}/pg_wal/RECOVERYXLOG/`,
    ]) {
      const result = restoreDestination("destination_file_name", file, pgData)
      assert.isTrue(Either.isLeft(result) && result.left.field === "destination_file_name", file)
    }
  })
})

describe("restoreDestination against hostile destinations (issue 8)", () => {
  const refused = (file: string) => {
    const result = restoreDestination("destination_file_name", file, pgData)
    return Either.isLeft(result) && result.left.field === "destination_file_name"
  }

  it("keeps accepting what PostgreSQL and pg_rewind ask for, made absolute", () => {
    for (const name of ["RECOVERYXLOG", "RECOVERYHISTORY", "000000010000000000000003", "00000002.history"]) {
      assert.deepStrictEqual(
        restoreDestination("destination_file_name", `${pgData}/pg_wal/${name}`, pgData),
        Either.right(`${pgData}/pg_wal/${name}`),
      )
    }
  })

  it("refuses a traversal, an absolute path outside PGDATA, and the relative %p", () => {
    for (const file of [
      "../../etc/x",
      `${pgData}/pg_wal/../../../../etc/x`,
      "/etc/x",
      "/var/lib/postgresql/data/other/pg_wal/RECOVERYXLOG",
      `${pgData}-evil/pg_wal/RECOVERYXLOG`,
      "pg_wal/RECOVERYXLOG",
    ]) {
      assert.isTrue(refused(file), file)
    }
  })

  it("refuses a subdirectory of pg_wal: it may be a symbolic link out of PGDATA", () => {
    for (const file of [`${pgData}/pg_wal/escape/x`, `${pgData}/pg_wal/archive_status/x.done`]) {
      assert.isTrue(refused(file), file)
    }
  })

  it("refuses pg_wal itself and names with control or shell characters", () => {
    for (const file of [
      `${pgData}/pg_wal/`,
      `${pgData}/pg_wal/a\u0000b`,
      `${pgData}/pg_wal/RECOVERY\nXLOG`,
      `${pgData}/pg_wal/$(id)`,
      `${pgData}/pg_wal/x;rm -rf ~`,
      `${pgData}/pg_wal/.hidden`,
    ]) {
      assert.isTrue(refused(file), JSON.stringify(file))
    }
  })

  it("quotes a hostile value in its message bounded and escaped", () => {
    const huge = restoreDestination(
      "destination_file_name",
      `${pgData}/pg_wal/${"x".repeat(1_000_000)}`,
      pgData,
    )
    assert.isTrue(Either.isLeft(huge) && huge.left.message.length < 500)
    const newline = restoreDestination("destination_file_name", `${pgData}/pg_wal/a\nb`, pgData)
    assert.isTrue(Either.isLeft(newline) && newline.left.message.includes("a\\nb"))
    assert.isTrue(Either.isLeft(newline) && !newline.left.message.includes("\n"))
    const name = decodeWalFileName("source_wal_name", "y".repeat(1_000_000))
    assert.isTrue(Either.isLeft(name) && name.left.message.length < 500)
  })
})
