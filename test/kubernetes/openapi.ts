import { isObject, type Json, type JsonObject } from "./support.js"

/**
 * A validator for the subset of OpenAPI v3 a structural CRD schema uses, as the API server applies it
 * to a custom resource: unknown fields and non-nullable nulls are pruned, defaults applied, then types,
 * enums, patterns, bounds, required fields and CEL rules checked. Good enough to compare the Stanza
 * CRD with the plugin's own decoder; any keyword it does not know makes it throw, so the CRD cannot
 * grow a constraint these tests would silently ignore.
 */

export interface Outcome {
  /** Field paths and what is wrong with them: the API server would refuse the object. */
  readonly errors: ReadonlyArray<string>
  /** Field paths the API server would drop before storing the object. */
  readonly pruned: ReadonlyArray<string>
  /** The object as it would be stored: pruned and defaulted. */
  readonly stored: Json
}

/** The keywords this validator understands; `description` and the printer's are ignored. */
export const SUPPORTED_KEYWORDS: ReadonlySet<string> = new Set([
  "type",
  "description",
  "properties",
  "required",
  "additionalProperties",
  "items",
  "enum",
  "pattern",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "default",
  "nullable",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-validations",
])

/**
 * The CEL rules of the CRD, each with its meaning in JavaScript. The API server evaluates the CEL;
 * here the equivalent is looked up by the rule's exact text, and a rule without one is an error.
 */
export const CEL_RULES: Readonly<Record<string, (self: JsonObject) => boolean>> = {
  "(has(self.s3Repositories) && size(self.s3Repositories) > 0) || (has(self.posixRepositories) && size(self.posixRepositories) > 0)":
    (self) =>
      (Array.isArray(self.s3Repositories) && self.s3Repositories.length > 0) ||
      (Array.isArray(self.posixRepositories) && self.posixRepositories.length > 0),
  "has(self.accessKeyId) == has(self.secretAccessKey)": (self) =>
    "accessKeyId" in self === "secretAccessKey" in self,
}

const schemaOf = (value: Json | undefined, where: string): JsonObject => {
  if (!isObject(value)) {
    throw new Error(`${where}: a schema must be an object`)
  }
  for (const keyword of Object.keys(value)) {
    if (!SUPPORTED_KEYWORDS.has(keyword)) {
      throw new Error(`${where}: the validator does not know the keyword ${keyword}`)
    }
  }
  return value
}

const typeMatches = (type: Json | undefined, value: Json): boolean => {
  switch (type) {
    case undefined:
      return true
    case "object":
      return isObject(value)
    case "array":
      return Array.isArray(value)
    case "string":
      return typeof value === "string"
    case "boolean":
      return typeof value === "boolean"
    case "integer":
      return typeof value === "number" && Number.isInteger(value)
    case "number":
      return typeof value === "number" && Number.isFinite(value)
    default:
      throw new Error(`unknown type ${JSON.stringify(type)}`)
  }
}

const stringList = (value: Json | undefined): ReadonlyArray<string> =>
  Array.isArray(value) ? value.filter((item): item is string => typeof item === "string") : []

/** Validates `value` at `where` against `schema`, collecting errors and pruned paths. */
const check = (
  schema: JsonObject,
  value: Json,
  where: string,
  errors: Array<string>,
  pruned: Array<string>,
): Json => {
  if (!typeMatches(schema.type, value)) {
    errors.push(`${where}: must be of type ${String(schema.type)}`)
    return value
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((allowed) => allowed === value)) {
    errors.push(`${where}: must be one of ${JSON.stringify(schema.enum)}`)
  }
  if (typeof value === "string") {
    if (typeof schema.minLength === "number" && [...value].length < schema.minLength) {
      errors.push(`${where}: shorter than ${schema.minLength}`)
    }
    if (typeof schema.maxLength === "number" && [...value].length > schema.maxLength) {
      errors.push(`${where}: longer than ${schema.maxLength}`)
    }
    if (typeof schema.pattern === "string" && !new RegExp(schema.pattern).test(value)) {
      errors.push(`${where}: does not match ${schema.pattern}`)
    }
  }
  if (typeof value === "number") {
    if (typeof schema.minimum === "number" && value < schema.minimum) {
      errors.push(`${where}: below ${schema.minimum}`)
    }
    if (typeof schema.maximum === "number" && value > schema.maximum) {
      errors.push(`${where}: above ${schema.maximum}`)
    }
  }
  let result: Json = value
  if (Array.isArray(value)) {
    if (typeof schema.minItems === "number" && value.length < schema.minItems) {
      errors.push(`${where}: fewer than ${schema.minItems} items`)
    }
    if (typeof schema.maxItems === "number" && value.length > schema.maxItems) {
      errors.push(`${where}: more than ${schema.maxItems} items`)
    }
    const items = schemaOf(schema.items, `${where}.items`)
    result = value.map((item, index) => {
      if (item === null) {
        errors.push(`${where}[${index}]: must not be null`)
        return item
      }
      return check(items, item, `${where}[${index}]`, errors, pruned)
    })
  }
  if (isObject(value)) {
    result = checkObject(schema, value, where, errors, pruned)
  }
  return result
}

const checkObject = (
  schema: JsonObject,
  value: JsonObject,
  where: string,
  errors: Array<string>,
  pruned: Array<string>,
): JsonObject => {
  const properties = isObject(schema.properties) ? schema.properties : {}
  const additional =
    schema.additionalProperties === undefined
      ? undefined
      : schemaOf(schema.additionalProperties, `${where}.additionalProperties`)
  const preserve = schema["x-kubernetes-preserve-unknown-fields"] === true
  const stored: Record<string, Json> = {}
  const child = (key: string) => (where === "" ? key : `${where}.${key}`)
  for (const [key, item] of Object.entries(value)) {
    const declared = properties[key]
    const itemSchema =
      declared !== undefined
        ? schemaOf(declared, child(key))
        : additional !== undefined
          ? additional
          : undefined
    if (itemSchema === undefined) {
      if (preserve) {
        stored[key] = item
      } else {
        pruned.push(child(key))
      }
      continue
    }
    if (item === null && itemSchema.nullable !== true) {
      // Pruned before defaulting, so a default then fills the field in.
      pruned.push(child(key))
      continue
    }
    stored[key] = item === null ? null : check(itemSchema, item, child(key), errors, pruned)
  }
  for (const [key, declared] of Object.entries(properties)) {
    const propertySchema = schemaOf(declared, child(key))
    if (!(key in stored) && propertySchema.default !== undefined) {
      stored[key] = check(propertySchema, propertySchema.default, child(key), errors, pruned)
    }
  }
  for (const key of stringList(schema.required)) {
    if (!(key in stored)) {
      errors.push(`${child(key)}: is required`)
    }
  }
  const rules = schema["x-kubernetes-validations"]
  for (const rule of Array.isArray(rules) ? rules : []) {
    const text = isObject(rule) ? rule.rule : undefined
    const meaning = typeof text === "string" ? CEL_RULES[text] : undefined
    if (meaning === undefined) {
      throw new Error(`${where}: no JavaScript equivalent for the CEL rule ${JSON.stringify(text)}`)
    }
    if (!meaning(stored)) {
      errors.push(`${where}: ${isObject(rule) && typeof rule.message === "string" ? rule.message : text}`)
    }
  }
  return stored
}

/** What the API server would make of `value` under the CRD schema `schema`. */
export const validate = (schema: Json, value: Json): Outcome => {
  const errors: Array<string> = []
  const pruned: Array<string> = []
  const stored = check(schemaOf(schema, "(root)"), value, "", errors, pruned)
  return { errors, pruned, stored }
}

/** Every sub-schema with its path, for structural checks on the schema itself. */
export const walkSchema = (
  schema: Json,
  visit: (node: JsonObject, path: string) => void,
  path = "",
): void => {
  const node = schemaOf(schema, path === "" ? "(root)" : path)
  visit(node, path)
  if (isObject(node.properties)) {
    for (const [key, child] of Object.entries(node.properties)) {
      walkSchema(child, visit, path === "" ? key : `${path}.${key}`)
    }
  }
  if (node.items !== undefined) {
    walkSchema(node.items, visit, `${path}[]`)
  }
  if (isObject(node.additionalProperties)) {
    walkSchema(node.additionalProperties, visit, `${path}{}`)
  }
}
