import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import fc from "fast-check"
import { decodeBackupParameters } from "../../src/domain/backupParameters.js"
import { decodeBackupResource } from "../../src/domain/backupResource.js"
import { archiveStanzaRef, decodeCluster, walRestoreStanzaRef } from "../../src/domain/cluster.js"
import { InvalidRequest } from "../../src/domain/errors.js"
import { isObjectName, OBJECT_NAME_RULE } from "../../src/domain/kubernetesName.js"
import { BACKUP_TYPES } from "../../src/domain/pgbackrestInfo.js"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { hostileJson, hostileString } from "./arbitraries.js"

/**
 * Parameters are string maps a user writes (the Cluster's `spec.plugins[].parameters`, a Backup's
 * `pluginConfiguration.parameters`). Whatever the map, the answer is either the documented result or
 * an error that names the parameter. The expected answer comes from a small model of the rules.
 */

const isOwn = (record: Readonly<Record<string, unknown>>, key: string): boolean => Object.hasOwn(record, key)

// ---------------------------------------------------------------------------------------------------
// Backup parameters: selectedRepository (1..N, decimal without leading zero) and backupType.

const repositoryText = fc.oneof(
  fc.constantFrom(
    "1",
    "2",
    "3",
    "7",
    "12",
    "13",
    "0",
    "00",
    "01",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1.0",
    "1e0",
    "0x1",
  ),
  fc.constantFrom("999999", "1000000", "١", "\uff11", "1\n", "1\u0000"),
  fc.integer({ min: -5, max: 20 }).map(String),
  hostileString,
)
const typeText = fc.oneof(
  fc.constantFrom(...BACKUP_TYPES, "FULL", "Full", "full ", "incremental", ""),
  hostileString,
)
const parameterName = fc.oneof(
  { arbitrary: fc.constantFrom("selectedRepository", "backupType"), weight: 4 },
  {
    arbitrary: fc.constantFrom(
      "backuptype",
      "SelectedRepository",
      "repository",
      "type",
      "constructor",
      "toString",
    ),
    weight: 1,
  },
  { arbitrary: hostileString, weight: 1 },
)
const backupParameters = fc.dictionary(parameterName, fc.oneof(repositoryText, typeText), { maxKeys: 4 })

const rangeText = (count: number): string => (count <= 1 ? "must be 1" : `must be between 1 and ${count}`)

/** What the rules say about `parameters` for a Stanza with `count` repositories. */
const model = (parameters: Readonly<Record<string, string>>, count: number) => {
  const repository = isOwn(parameters, "selectedRepository") ? parameters.selectedRepository : undefined
  const type = isOwn(parameters, "backupType") ? parameters.backupType : undefined
  const repositoryOk =
    repository === undefined || (/^[1-9][0-9]{0,5}$/.test(repository) && Number(repository) <= count)
  const typeOk = type === undefined || BACKUP_TYPES.some((valid) => valid === type)
  const invalid = new Map<string, string>()
  if (!repositoryOk) {
    invalid.set("selectedRepository", `${rangeText(count)}, got ${JSON.stringify(repository)}`)
  }
  if (!typeOk) {
    invalid.set("backupType", `must be one of full, diff, incr, got ${JSON.stringify(type)}`)
  }
  const unknown = Object.keys(parameters).filter(
    (key) => key !== "selectedRepository" && key !== "backupType",
  )
  return {
    invalid,
    unknown,
    result: {
      selectedRepository: repository === undefined ? 1 : Number(repository),
      backupType: type ?? "full",
    },
  }
}

describe("hostile Backup parameters", () => {
  it("any string map: the documented result, or an error naming the offending parameter", () => {
    const prefix = fc.constantFrom("parameters", "spec.pluginConfiguration.parameters")
    fc.assert(
      fc.property(backupParameters, fc.integer({ min: 1, max: 12 }), prefix, (parameters, count, at) => {
        const decoded = decodeBackupParameters(parameters, count, at)
        const expected = model(parameters, count)
        if (expected.invalid.size > 0) {
          // A value that fails its own check is reported before an unknown name beside it.
          assert.isTrue(Either.isLeft(decoded), `accepted ${JSON.stringify(parameters)} with ${count}`)
          if (Either.isLeft(decoded)) {
            const name = decoded.left.field.slice(at.length + 1)
            assert.strictEqual(decoded.left.field, `${at}.${name}`)
            const reason = expected.invalid.get(name)
            assert.isDefined(reason, `${decoded.left.field} is not an invalid parameter`)
            assert.isTrue(decoded.left.reason.startsWith(reason ?? ""), decoded.left.reason)
          }
        } else if (expected.unknown.length > 0) {
          assert.isTrue(Either.isLeft(decoded), `accepted unknown ${expected.unknown.join(", ")}`)
          if (Either.isLeft(decoded)) {
            assert.include(
              expected.unknown.map((name) => `${at}.${name}`),
              decoded.left.field,
            )
            assert.match(decoded.left.reason, /^unknown field; expected one of .*selectedRepository/)
          }
        } else {
          const widened = Either.map(decoded, (value): typeof expected.result => value)
          assert.deepStrictEqual(widened, Either.right(expected.result))
          if (Either.isRight(decoded)) {
            assert.isTrue(decoded.right.selectedRepository >= 1 && decoded.right.selectedRepository <= count)
          }
        }
      }),
      { numRuns: 300 },
    )
  })

  it("a Backup resource with parameters of any JSON type: strings pass, anything else is named", () => {
    const parameters = fc.dictionary(parameterName, hostileJson, { maxKeys: 4 })
    fc.assert(
      fc.property(parameters, (values) => {
        const decoded = decodeBackupResource({
          apiVersion: "postgresql.cnpg.io/v1",
          metadata: { name: "backup-1", namespace: "db" },
          spec: { method: "plugin", pluginConfiguration: { name: PLUGIN_NAME, parameters: values } },
        })
        const notStrings = Object.keys(values).filter((key) => typeof values[key] !== "string")
        if (notStrings.length === 0) {
          assert.isTrue(Either.isRight(decoded))
          if (Either.isRight(decoded)) {
            assert.deepStrictEqual(decoded.right.spec.pluginConfiguration?.parameters, values)
          }
        } else {
          assert.isTrue(Either.isLeft(decoded))
          if (Either.isLeft(decoded)) {
            const prefix = "resource_definition.spec.pluginConfiguration.parameters"
            assert.include(
              notStrings.map((key) => `${prefix}.${key}`),
              decoded.left.field,
            )
          }
        }
      }),
      { numRuns: 200 },
    )
  })
})

// ---------------------------------------------------------------------------------------------------
// Cluster plugin parameters: which Stanza a Cluster archives to, and restores from.

const stanzaRefValue = fc.oneof(fc.constantFrom("main", "stanza-a", ""), hostileString)
const pluginParameters = fc.dictionary(
  fc.oneof(
    { arbitrary: fc.constant("stanzaRef"), weight: 3 },
    { arbitrary: fc.constantFrom("stanzaref", "StanzaRef", "stanza", "__proto__", "constructor"), weight: 1 },
    { arbitrary: hostileString, weight: 1 },
  ),
  stanzaRefValue,
  { maxKeys: 3 },
)

interface Entry {
  readonly name: string
  readonly enabled?: boolean
  readonly parameters?: Readonly<Record<string, string>>
}

const entry: fc.Arbitrary<Entry> = fc.record(
  {
    name: fc.oneof(
      { arbitrary: fc.constant(PLUGIN_NAME), weight: 4 },
      { arbitrary: fc.constantFrom("barman-cloud.cloudnative-pg.io", `${PLUGIN_NAME} `), weight: 1 },
      { arbitrary: hostileString, weight: 1 },
    ),
    enabled: fc.boolean(),
    parameters: pluginParameters,
  },
  { requiredKeys: ["name"] },
)

const clusterWith = (plugins: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}) => ({
  apiVersion: "postgresql.cnpg.io/v1",
  kind: "Cluster",
  metadata: { name: "pg", namespace: "db" },
  spec: { instances: 1, plugins, ...extra },
})

const ownRef = (parameters: Readonly<Record<string, string>> | undefined): string | undefined =>
  parameters !== undefined && isOwn(parameters, "stanzaRef") ? parameters.stanzaRef : undefined

describe("hostile Cluster plugin parameters", () => {
  it("the Stanza a Cluster archives to is its own entry's stanzaRef, verbatim, or an error naming it", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 4 }), (plugins) => {
        const decoded = decodeCluster(clusterWith(plugins))
        assert.isTrue(Either.isRight(decoded), "string parameters always decode")
        if (Either.isLeft(decoded)) {
          return
        }
        const result = archiveStanzaRef(decoded.right)
        const index = plugins.findIndex((p) => p.name === PLUGIN_NAME && p.enabled !== false)
        const ref = index < 0 ? undefined : ownRef(plugins[index]?.parameters)
        if (index < 0) {
          assert.isTrue(Either.isLeft(result) && result.left.field === "spec.plugins")
          assert.isTrue(
            Either.isLeft(result) && result.left.reason.includes(`does not enable the ${PLUGIN_NAME}`),
          )
        } else if (ref === undefined || ref === "") {
          assert.isTrue(
            Either.isLeft(result) && result.left.field === `spec.plugins[${index}].parameters.stanzaRef`,
            JSON.stringify(result),
          )
          assert.isTrue(Either.isLeft(result) && result.left.reason === "the name of a Stanza is required")
        } else if (!isObjectName(ref)) {
          // It would go into the API path of the Stanza read: refused, naming the field.
          assert.deepStrictEqual(
            result,
            Either.left(
              new InvalidRequest({
                field: `spec.plugins[${index}].parameters.stanzaRef`,
                reason: OBJECT_NAME_RULE,
              }),
            ),
          )
        } else {
          assert.deepStrictEqual(result, Either.right(ref))
        }
      }),
      { numRuns: 300 },
    )
  })

  it("the restore sidecar's Stanza is the recovery source's stanzaRef, or an error naming the field", () => {
    const external = fc.record({
      name: fc.oneof(fc.constantFrom("origin", "other"), hostileString),
      plugin: fc.option(
        fc.record({
          name: fc.oneof(
            { arbitrary: fc.constant(PLUGIN_NAME), weight: 3 },
            { arbitrary: hostileString, weight: 1 },
          ),
          parameters: pluginParameters,
        }),
        { nil: undefined },
      ),
    })
    const source = fc.option(fc.oneof(fc.constantFrom("origin", "other", ""), hostileString), {
      nil: undefined,
    })
    fc.assert(
      fc.property(fc.array(external, { maxLength: 3 }), source, (externals, recoverySource) => {
        const cleaned = externals.map((e) => (e.plugin === undefined ? { name: e.name } : e))
        const input = clusterWith([], {
          externalClusters: cleaned,
          bootstrap: { recovery: recoverySource === undefined ? {} : { source: recoverySource } },
        })
        const decoded = decodeCluster(input)
        assert.isTrue(Either.isRight(decoded))
        if (Either.isLeft(decoded)) {
          return
        }
        const result = walRestoreStanzaRef(decoded.right, "restore")
        const index = cleaned.findIndex((e) => e.name === recoverySource)
        const found = index < 0 ? undefined : externals[index]
        const ref = ownRef(found?.plugin?.parameters)
        const field = Either.isLeft(result) ? result.left.field : undefined
        if (recoverySource === undefined || recoverySource === "") {
          assert.strictEqual(field, "spec.bootstrap.recovery.source")
        } else if (found === undefined) {
          assert.strictEqual(field, "spec.bootstrap.recovery.source")
          assert.isTrue(Either.isLeft(result) && result.left.reason.includes("no externalClusters entry"))
        } else if (found.plugin?.name !== PLUGIN_NAME) {
          assert.strictEqual(field, `spec.externalClusters[${index}].plugin.name`)
        } else if (ref === undefined || ref === "") {
          assert.strictEqual(field, `spec.externalClusters[${index}].plugin.parameters.stanzaRef`)
        } else if (!isObjectName(ref)) {
          assert.strictEqual(field, `spec.externalClusters[${index}].plugin.parameters.stanzaRef`)
          assert.isTrue(Either.isLeft(result) && result.left.reason === OBJECT_NAME_RULE)
        } else {
          assert.deepStrictEqual(result, Either.right(ref))
        }
      }),
      { numRuns: 300 },
    )
  })

  it("parameters of any other JSON type are refused, naming the parameter", () => {
    const parameters = fc.dictionary(fc.oneof(fc.constant("stanzaRef"), hostileString), hostileJson, {
      maxKeys: 3,
    })
    fc.assert(
      fc.property(parameters, (values) => {
        const decoded = decodeCluster(clusterWith([{ name: PLUGIN_NAME, parameters: values }]))
        const notStrings = Object.keys(values).filter((key) => typeof values[key] !== "string")
        if (notStrings.length === 0) {
          assert.isTrue(Either.isRight(decoded))
        } else {
          assert.isTrue(Either.isLeft(decoded))
          if (Either.isLeft(decoded)) {
            assert.include(
              notStrings.map((key) => `cluster.spec.plugins[0].parameters.${key}`),
              decoded.left.field,
            )
          }
        }
      }),
      { numRuns: 200 },
    )
  })
})
