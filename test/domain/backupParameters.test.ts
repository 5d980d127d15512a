import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { decodeBackupParameters } from "../../src/domain/backupParameters.js"
import { decodeBackupResource } from "../../src/domain/backupResource.js"

const problem = (parameters: Record<string, string>, count: number, prefix?: string): string =>
  Either.match(decodeBackupParameters(parameters, count, prefix), {
    onLeft: (error) => error.message,
    onRight: (value) => assert.fail(`expected an error, got ${JSON.stringify(value)}`),
  })

describe("Backup parameters", () => {
  it("defaults to the first repository and a full backup", () => {
    assert.deepStrictEqual(
      decodeBackupParameters({}, 2),
      Either.right({ selectedRepository: 1, backupType: "full" }),
    )
  })

  it("reads a 1-based repository number and a backup type", () => {
    assert.deepStrictEqual(
      decodeBackupParameters({ selectedRepository: "2", backupType: "incr" }, 2),
      Either.right({ selectedRepository: 2, backupType: "incr" }),
    )
    assert.deepStrictEqual(
      decodeBackupParameters({ selectedRepository: "1", backupType: "diff" }, 1),
      Either.right({ selectedRepository: 1, backupType: "diff" }),
    )
  })

  it("refuses a repository outside 1..N, naming the parameter and the range", () => {
    assert.strictEqual(
      problem({ selectedRepository: "0" }, 2),
      'parameters.selectedRepository: must be between 1 and 2, got "0"',
    )
    assert.strictEqual(
      problem({ selectedRepository: "3" }, 2),
      'parameters.selectedRepository: must be between 1 and 2, got "3"',
    )
    assert.strictEqual(
      problem({ selectedRepository: "2" }, 1),
      'parameters.selectedRepository: must be 1, got "2"',
    )
    for (const text of ["", "01", "1.0", "-1", " 1", "one", "1e0"]) {
      assert.include(problem({ selectedRepository: text }, 4), "must be between 1 and 4", text)
    }
  })

  it("refuses an unknown backup type", () => {
    assert.strictEqual(
      problem({ backupType: "FULL" }, 1),
      'parameters.backupType: must be one of full, diff, incr, got "FULL"',
    )
  })

  it("refuses an unknown parameter, so that a typo does not fall back to a default", () => {
    const message = problem({ backuptype: "diff" }, 1, "spec.pluginConfiguration.parameters")
    assert.match(message, /^spec\.pluginConfiguration\.parameters\.backuptype: unknown field/)
    assert.include(message, "selectedRepository")
  })
})

describe("a Backup as the reconciler hooks receive it", () => {
  it("reads the plugin configuration leniently", () => {
    const backup = decodeBackupResource({
      apiVersion: "postgresql.cnpg.io/v1",
      kind: "Backup",
      metadata: { name: "b", namespace: "db", uid: "u", managedFields: [] },
      spec: {
        cluster: { name: "pg" },
        method: "plugin",
        pluginConfiguration: { name: "pgbackrest.dalibo.com", parameters: { backupType: "diff" } },
      },
    })
    assert.isTrue(Either.isRight(backup))
    if (Either.isRight(backup)) {
      assert.strictEqual(backup.right.spec.pluginConfiguration?.parameters?.backupType, "diff")
    }
    assert.isTrue(Either.isRight(decodeBackupResource({ metadata: { name: "b" } })))
  })
})
