import { Either, Option } from "effect"
import { type Cluster, ownPluginEntry } from "./cluster.js"
import { InvalidRequest } from "./errors.js"
import { PLUGIN_NAME } from "./plugin.js"
import { decodeStanza, type Stanza } from "./stanza.js"

/** A Stanza a Cluster names, with every field that names it (for messages). */
export interface StanzaReference {
  readonly name: string
  readonly fields: ReadonlyArray<string>
}

/**
 * Every Stanza a Cluster references, in the Cluster's namespace: the one its own plugin entry archives
 * to (`spec.plugins[name=pgbackrest.dalibo.com].parameters.stanzaRef`), then those of the
 * `externalClusters[]` whose plugin is this one (recovery and replica sources). Each name appears once,
 * in order of first mention; empty names are skipped (the WAL path reports that misconfiguration).
 */
export const referencedStanzas = (cluster: Cluster): ReadonlyArray<StanzaReference> => {
  const found = new Map<string, Array<string>>()
  const add = (name: string | undefined, field: string) => {
    if (name === undefined || name === "") {
      return
    }
    const fields = found.get(name) ?? []
    fields.push(field)
    found.set(name, fields)
  }
  const plugins = cluster.spec.plugins ?? []
  const own = ownPluginEntry(cluster)
  if (Option.isSome(own)) {
    add(own.value.parameters?.stanzaRef, `spec.plugins[${plugins.indexOf(own.value)}].parameters.stanzaRef`)
  }
  ;(cluster.spec.externalClusters ?? []).forEach((external, index) => {
    if (external.plugin?.name === PLUGIN_NAME) {
      add(
        external.plugin.parameters?.stanzaRef,
        `spec.externalClusters[${index}].plugin.parameters.stanzaRef`,
      )
    }
  })
  return [...found].map(([name, fields]) => ({ name, fields }))
}

/**
 * Whether the plugin has anything to do for this Cluster: it enables the plugin, or restores or
 * replicates from a source that uses it.
 */
export const usesPlugin = (cluster: Cluster): boolean =>
  Option.isSome(ownPluginEntry(cluster)) ||
  (cluster.spec.externalClusters ?? []).some((external) => external.plugin?.name === PLUGIN_NAME)

/** A referenced Stanza as read from the API: found and valid, absent, or invalid (the error names the field). */
export type StanzaLookup =
  | { readonly _tag: "Found"; readonly stanza: Stanza }
  | { readonly _tag: "Missing"; readonly reason: string }
  | { readonly _tag: "Invalid"; readonly error: InvalidRequest }

/** Decodes the Stanza `namespace/name` as read; an invalid one names itself and the field in its error. */
export const stanzaLookupOf = (namespace: string, name: string, raw: unknown): StanzaLookup =>
  Either.match(decodeStanza(raw), {
    onRight: (stanza): StanzaLookup => ({ _tag: "Found", stanza }),
    onLeft: (error): StanzaLookup => ({
      _tag: "Invalid",
      error: new InvalidRequest({
        field: `Stanza ${namespace}/${name} ${error.field}`,
        reason: error.reason,
      }),
    }),
  })
