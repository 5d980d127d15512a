import { assert, describe, it } from "@effect/vitest"
import { Either, JSONSchema } from "effect"
import { StanzaSpec } from "../../src/domain/stanza.js"
import { stanzaStatus } from "../../src/domain/stanzaStatus.js"
import { infoStanza } from "../fixtures/pgbackrest-info/load.js"
import { CONFIG, minimalStanza, withValue } from "./corpus.js"
import { CEL_RULES, walkSchema } from "./openapi.js"
import { crd, plugin, schema, specSchema, version } from "./stanzaCrd.js"
import { at, canonical, isObject, type Json, type JsonObject } from "./support.js"

describe("the Stanza CRD", () => {
  it("is a namespaced v1 resource with a status subresource and printer columns", () => {
    assert.strictEqual(at(crd, "metadata", "name"), "stanzas.pgbackrest.dalibo.com")
    assert.strictEqual(at(crd, "spec", "group"), "pgbackrest.dalibo.com")
    assert.strictEqual(at(crd, "spec", "scope"), "Namespaced")
    assert.strictEqual(at(crd, "spec", "names", "kind"), "Stanza")
    assert.strictEqual(at(crd, "spec", "names", "plural"), "stanzas")
    assert.strictEqual(at(version, "name"), "v1")
    assert.strictEqual(at(version, "served"), true)
    assert.strictEqual(at(version, "storage"), true)
    assert.deepStrictEqual(at(version, "subresources", "status"), {})
    assert.deepStrictEqual(at(schema, "required"), ["spec"])
    assert.strictEqual(at(schema, "properties", "status", "x-kubernetes-preserve-unknown-fields"), true)
  })

  it("uses only keywords the validator knows, RE2-compatible patterns and CEL rules it can evaluate", () => {
    let patterns = 0
    walkSchema(schema, (node, path) => {
      if (typeof node.pattern === "string") {
        patterns++
        // Go's regexp (RE2) has no lookaround nor backreferences; anchors make it match the whole value.
        assert.notMatch(node.pattern, /\(\?|\\[1-9]/, `${path}: pattern not RE2-compatible`)
        assert.match(node.pattern, /^\^.*\$$/, `${path}: pattern must be anchored`)
      }
      for (const rule of Array.isArray(node["x-kubernetes-validations"])
        ? node["x-kubernetes-validations"]
        : []) {
        const text = at(rule, "rule")
        assert.isString(text)
        assert.isFunction(CEL_RULES[String(text)], `${path}: CEL rule without a JavaScript equivalent`)
        assert.isString(at(rule, "message"), `${path}: a CEL rule needs a message`)
      }
    })
    assert.isAtLeast(patterns, 5)
  })

  it("has the structure of the plugin's schema: fields, types, enums, bounds, required fields", () => {
    const effect = JSONSchema.make(StanzaSpec)
    const defs = isObject(effect.$defs) ? (effect.$defs as JsonObject) : {}
    const resolve = (node: Json): JsonObject => {
      if (!isObject(node)) {
        return {}
      }
      const ref = node.$ref
      if (typeof ref === "string") {
        const target = defs[ref.replace("#/$defs/", "")]
        const { $ref: _ref, ...rest } = node
        return { ...(isObject(target) ? target : {}), ...rest }
      }
      return node
    }
    // Constraints the CRD adds to express the plugin's filters (patterns, CEL), checked by behaviour below.
    // The free-form strings that reach pgBackRest or a log refuse control characters (a pattern).
    const selectors = [
      "s3Repositories[].secretRef.accessKeyId",
      "s3Repositories[].secretRef.secretAccessKey",
      "s3Repositories[].cipherConfig.encryptionPass",
      "s3Repositories[].endpointCA",
      "posixRepositories[].cipherConfig.encryptionPass",
    ].flatMap((selector) => [`${selector}.name`, `${selector}.key`])
    const withoutControls = [
      "s3Repositories[].bucket",
      "s3Repositories[].region",
      "customEnvVar{}",
      ...selectors,
    ]
    const crdOnly: Readonly<Record<string, ReadonlyArray<string>>> = {
      stanzaConfiguration: ["x-kubernetes-validations"],
      "stanzaConfiguration.name": ["pattern", "maxLength"],
      "stanzaConfiguration.s3Repositories[].endpoint": ["pattern"],
      "stanzaConfiguration.s3Repositories[].repoPath": ["pattern"],
      "stanzaConfiguration.s3Repositories[].secretRef": ["x-kubernetes-validations"],
      "stanzaConfiguration.posixRepositories[].repoPath": ["pattern"],
      "stanzaConfiguration.azureRepositories": ["maxItems"],
      "stanzaConfiguration.archive.pushQueueMax": ["pattern"],
      "stanzaConfiguration.archive.getQueueMax": ["pattern"],
      ...Object.fromEntries(withoutControls.map((field) => [`stanzaConfiguration.${field}`, ["pattern"]])),
    }
    const compared = ["type", "enum", "minimum", "maximum", "minLength", "maxLength", "maxItems", "pattern"]
    let nodes = 0
    const compare = (ours: Json, theirs: Json, path: string) => {
      nodes++
      const crdNode = isObject(ours) ? ours : {}
      const effectNode = resolve(theirs)
      if (path === "stanzaConfiguration.azureRepositories[]") {
        // Effect: any item (the filter then refuses every one); the CRD: maxItems 0 on the list.
        assert.strictEqual(crdNode["x-kubernetes-preserve-unknown-fields"], true)
        return
      }
      for (const keyword of compared) {
        if (keyword in effectNode) {
          const expected = effectNode[keyword]
          const actual = crdNode[keyword]
          const same =
            keyword === "enum" && Array.isArray(expected) && Array.isArray(actual)
              ? canonical([...actual].sort()) === canonical([...expected].sort())
              : canonical(actual) === canonical(expected)
          assert.isTrue(
            same,
            `${path}: ${keyword} is ${canonical(actual)}, the plugin's ${canonical(expected)}`,
          )
        } else if (keyword in crdNode && keyword !== "type") {
          assert.include(crdOnly[path] ?? [], keyword, `${path}: ${keyword} has no counterpart in the plugin`)
        }
      }
      if ("x-kubernetes-validations" in crdNode) {
        assert.include(crdOnly[path] ?? [], "x-kubernetes-validations", `${path}: unexpected CEL rule`)
      }
      if (effectNode.type === "object") {
        const crdProperties = isObject(crdNode.properties) ? crdNode.properties : {}
        const effectProperties = isObject(effectNode.properties) ? effectNode.properties : {}
        assert.deepStrictEqual(
          Object.keys(crdProperties).sort(),
          Object.keys(effectProperties).sort(),
          `${path}: fields differ`,
        )
        const required = (node: JsonObject) => (Array.isArray(node.required) ? [...node.required].sort() : [])
        assert.deepStrictEqual(required(crdNode), required(effectNode), `${path}: required fields differ`)
        for (const key of Object.keys(effectProperties)) {
          compare(
            crdProperties[key] ?? null,
            effectProperties[key] ?? null,
            path === "" ? key : `${path}.${key}`,
          )
        }
        if (isObject(effectNode.additionalProperties)) {
          compare(crdNode.additionalProperties ?? null, effectNode.additionalProperties, `${path}{}`)
        } else {
          // Unknown fields: the plugin refuses them, the API server prunes them (never preserves them).
          assert.isUndefined(crdNode.additionalProperties, `${path}: additionalProperties`)
          assert.notStrictEqual(crdNode["x-kubernetes-preserve-unknown-fields"], true, path)
        }
      }
      if (effectNode.type === "array") {
        compare(crdNode.items ?? null, effectNode.items ?? null, `${path}[]`)
      }
    }
    compare(specSchema, effect as unknown as Json, "")
    assert.isAtLeast(nodes, 50)
  })

  it("has the plugin's defaults, and only those", () => {
    const defaults: Record<string, Json> = {}
    walkSchema(specSchema, (node, path) => {
      if (node.default !== undefined) {
        defaults[path] = node.default
      }
    })
    // Every optional object present (without its defaulted fields), then what the plugin fills in.
    const skeleton = withValue(minimalStanza(), [...CONFIG], {
      name: "main",
      s3Repositories: [
        {
          bucket: "b",
          endpoint: "s3.example.com",
          region: "r",
          repoPath: "/p",
          cipherConfig: { encryptionPass: { name: "s", key: "k" } },
        },
      ],
      posixRepositories: [{ repoPath: "/q", cipherConfig: { encryptionPass: { name: "s", key: "k" } } }],
      archive: {},
    })
    const decoded = plugin(skeleton)
    assert.isTrue(Either.isRight(decoded))
    const filled: Record<string, Json> = {}
    const diff = (before: Json, after: unknown, path: string) => {
      if (Array.isArray(after)) {
        after.forEach((item, index) => {
          diff(Array.isArray(before) ? (before[index] ?? null) : null, item, `${path}[]`)
        })
      } else if (isObject(after)) {
        for (const [key, value] of Object.entries(after)) {
          const child = path === "" ? key : `${path}.${key}`
          if (!isObject(before) || !(key in before)) {
            filled[child] = value
          } else {
            diff(before[key] ?? null, value, child)
          }
        }
      }
    }
    diff(at(skeleton, "spec") as Json, Either.isRight(decoded) ? decoded.right.spec : null, "")
    assert.deepStrictEqual(filled, defaults)
    assert.deepStrictEqual(defaults, {
      "stanzaConfiguration.s3Repositories[].verifyTLS": true,
      "stanzaConfiguration.s3Repositories[].cipherConfig.type": "aes-256-cbc",
      "stanzaConfiguration.posixRepositories[].cipherConfig.type": "aes-256-cbc",
      "stanzaConfiguration.archive.async": false,
      "stanzaConfiguration.startFast": true,
      "stanzaConfiguration.delta": true,
    })
  })

  it("has printer columns whose paths exist in the spec and in the status the sidecars write", () => {
    const info = infoStanza("two-repositories")
    const observation = {
      stanza: info.name,
      info: { _tag: "Listed", stanza: info } as const,
      lastArchived: { walName: "00000001000000000000000A", at: new Date("2024-05-02T14:05:00Z") },
      lastArchiveFailure: undefined,
      archiveFailures: 0,
      lastSucceeded: undefined,
      lastFailed: undefined,
    }
    const stanza = {
      ...minimalStanza(),
      metadata: { name: "s", creationTimestamp: "2024-05-01T00:00:00Z" },
      status: JSON.parse(JSON.stringify(stanzaStatus(observation, [], new Date("2024-05-02T14:10:00Z")))),
    }
    const columns = at(version, "additionalPrinterColumns")
    assert.isArray(columns)
    const evaluate = (path: string): unknown => {
      const steps = [...path.matchAll(/\.([A-Za-z][A-Za-z0-9]*)|\[(\d+)\]|\[\?\(@\.(\w+)=="([^"]*)"\)\]/g)]
      assert.strictEqual(steps.map((step) => step[0]).join(""), path, `unsupported JSONPath ${path}`)
      return steps.reduce<unknown>((node, [, field, index, key, value]) => {
        if (field !== undefined) {
          return at(node, field)
        }
        if (index !== undefined) {
          return at(node, Number(index))
        }
        return Array.isArray(node) ? node.find((item) => at(item, key ?? "") === value) : undefined
      }, stanza)
    }
    const values = Object.fromEntries(
      (columns as ReadonlyArray<unknown>).map((column) => [
        at(column, "name"),
        evaluate(String(at(column, "jsonPath"))),
      ]),
    )
    assert.deepStrictEqual(Object.keys(values), [
      "Stanza",
      "Bucket",
      "Ready",
      "Last backup",
      "Recoverable from",
      "Age",
    ])
    for (const [name, value] of Object.entries(values)) {
      assert.isString(value, `column ${name} finds nothing`)
    }
    assert.strictEqual(values.Ready, "True")
    assert.match(String(values["Recoverable from"]), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  })
})
