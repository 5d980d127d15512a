import { Either } from "effect"
import { decodeStanza } from "../../src/domain/stanza.js"
import { validate } from "./openapi.js"
import { at, isObject, type Json, rawManifests, read } from "./support.js"

/** The Stanza CRD of kubernetes/, and the two judges the tests compare: the API server and the plugin. */

export const crd = rawManifests(read("kubernetes/crd/stanzas.yaml"), "kubernetes/crd/stanzas.yaml")[0]
export const version = at(crd, "spec", "versions", 0)
export const schema = (at(version, "schema", "openAPIV3Schema") ?? null) as Json
export const specSchema = (at(schema, "properties", "spec") ?? null) as Json

/** The API server's view: metadata is validated by the API machinery, not by the CRD schema. */
export const apiServer = (object: Json) =>
  validate(schema, isObject(object) ? { ...object, metadata: {} } : object)

export const plugin = (object: Json) => decodeStanza(object)

export const describeErrors = (object: Json): string => {
  const outcome = apiServer(object)
  const decoded = plugin(object)
  return `API server: ${JSON.stringify(outcome.errors)} pruned ${JSON.stringify(outcome.pruned)}; plugin: ${
    Either.isLeft(decoded) ? decoded.left.message : "accepted"
  }`
}
