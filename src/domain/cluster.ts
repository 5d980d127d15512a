import { Either, Option, Schema } from "effect"
import { decodeWithPath } from "./decode.js"
import { InvalidRequest } from "./errors.js"
import { PLUGIN_NAME } from "./plugin.js"

/**
 * The parts of a CloudNativePG `Cluster` the plugin reads, decoded leniently: the operator sends the
 * object as JSON, possibly without apiVersion/kind, possibly from a fork with another API group, and
 * with far more fields than we care about.
 */
const Parameters = Schema.Record({ key: Schema.String, value: Schema.String })

export const PluginEntry = Schema.Struct({
  name: Schema.String,
  enabled: Schema.optional(Schema.Boolean),
  isWALArchiver: Schema.optional(Schema.Boolean),
  parameters: Schema.optional(Parameters),
})

export const ExternalCluster = Schema.Struct({
  name: Schema.String,
  plugin: Schema.optional(Schema.Struct({ name: Schema.String, parameters: Schema.optional(Parameters) })),
})

export const Cluster = Schema.Struct({
  metadata: Schema.Struct({
    name: Schema.String.pipe(Schema.minLength(1)),
    namespace: Schema.optional(Schema.String),
    uid: Schema.optional(Schema.String),
  }),
  spec: Schema.optionalWith(
    Schema.Struct({
      plugins: Schema.optional(Schema.Array(PluginEntry)),
      externalClusters: Schema.optional(Schema.Array(ExternalCluster)),
      bootstrap: Schema.optional(
        Schema.Struct({
          recovery: Schema.optional(Schema.Struct({ source: Schema.optional(Schema.String) })),
        }),
      ),
      replica: Schema.optional(
        Schema.Struct({ enabled: Schema.optional(Schema.Boolean), source: Schema.optional(Schema.String) }),
      ),
    }),
    { default: () => ({}) },
  ),
})
export type Cluster = typeof Cluster.Type

export const decodeCluster: (input: unknown) => Either.Either<Cluster, InvalidRequest> = decodeWithPath(
  Cluster,
  "cluster",
  { strict: false },
)

/** The Cluster JSON the operator puts in `cluster_definition`, decoded. */
export const decodeClusterDefinition = (bytes: Uint8Array): Either.Either<Cluster, InvalidRequest> =>
  Either.try({
    try: () => JSON.parse(new TextDecoder().decode(bytes)) as unknown,
    catch: () => new InvalidRequest({ field: "cluster_definition", reason: "is not valid JSON" }),
  }).pipe(Either.flatMap(decodeCluster))

/** This plugin's entry in `spec.plugins`, if the Cluster enables it. */
export const ownPluginEntry = (cluster: Cluster): Option.Option<typeof PluginEntry.Type> =>
  Option.fromNullable(
    cluster.spec.plugins?.find((entry) => entry.name === PLUGIN_NAME && entry.enabled !== false),
  )

/**
 * The Stanza the Cluster archives to: `spec.plugins[name=pgbackrest.dalibo.com].parameters.stanzaRef`.
 * A Cluster that sends us WAL without naming a Stanza is misconfigured: the error names the field.
 */
export const archiveStanzaRef = (cluster: Cluster): Either.Either<string, InvalidRequest> => {
  const index =
    cluster.spec.plugins?.findIndex((entry) => entry.name === PLUGIN_NAME && entry.enabled !== false) ?? -1
  const field = index < 0 ? "spec.plugins" : `spec.plugins[${index}].parameters.stanzaRef`
  return ownPluginEntry(cluster).pipe(
    Option.flatMap((entry) => Option.fromNullable(entry.parameters?.stanzaRef)),
    Option.filter((ref) => ref !== ""),
    Either.fromOption(
      () =>
        new InvalidRequest({
          field,
          reason:
            index < 0
              ? `cluster ${cluster.metadata.name} does not enable the ${PLUGIN_NAME} plugin`
              : "the name of a Stanza is required",
        }),
    ),
  )
}
