import { loadAllYaml } from "@kubernetes/client-node"
import { isObject, type Json, type JsonObject, objectsOf, rawManifests, read, yamlFiles } from "./support.js"

/**
 * Stanza specs for comparing the CRD schema with the plugin's decoder: valid ones both must accept,
 * and invalid ones with what each side does with them.
 */

export const minimalStanza = (): JsonObject => ({
  apiVersion: "pgbackrest.dalibo.com/v1",
  kind: "Stanza",
  metadata: { name: "s", namespace: "db" },
  spec: {
    stanzaConfiguration: {
      name: "main",
      s3Repositories: [{ bucket: "b", endpoint: "s3.example.com", region: "r", repoPath: "/p" }],
    },
  },
})

/** A copy of `root` with the value at `path` replaced (`undefined` removes the field). */
export const withValue = (
  root: Json,
  path: ReadonlyArray<string | number>,
  value: Json | undefined,
): Json => {
  const [head, ...rest] = path
  if (head === undefined) {
    return value ?? null
  }
  if (typeof head === "number") {
    const list = Array.isArray(root) ? [...root] : []
    list[head] = withValue(list[head] ?? null, rest, value)
    return list
  }
  const object: Record<string, Json> = isObject(root) ? { ...root } : {}
  if (rest.length === 0 && value === undefined) {
    delete object[head]
  } else {
    object[head] = withValue(object[head] ?? null, rest, value)
  }
  return object
}

export const CONFIG = ["spec", "stanzaConfiguration"] as const
export const REPO = [...CONFIG, "s3Repositories", 0] as const

/** The example of the plugin's documentation, as test/domain/stanza.test.ts holds it. */
export const documentedStanza = (): Json => {
  const source = read("test/domain/stanza.test.ts")
  const match = /const documented = `([^`]*)`/.exec(source)
  const text = match?.[1]
  if (text === undefined) {
    throw new Error("test/domain/stanza.test.ts no longer has `const documented`")
  }
  const [document] = loadAllYaml(text)
  return document
}

/** The labels of the invalid table of test/domain/stanza.test.ts, to keep this corpus in step with it. */
export const decoderInvalidLabels = (): ReadonlyArray<string> => {
  const source = read("test/domain/stanza.test.ts")
  const start = source.indexOf("const invalid:")
  const end = source.indexOf("for (const [label", start)
  if (start < 0 || end < 0) {
    throw new Error("test/domain/stanza.test.ts no longer has its invalid table")
  }
  return [...source.slice(start, end).matchAll(/\[\s*"([^"]+)",/g)].map((match) => match[1] ?? "")
}

/** Every Stanza of examples/, with its file. */
export const exampleStanzas = (): ReadonlyArray<{ readonly file: string; readonly stanza: JsonObject }> =>
  yamlFiles("examples").flatMap((file) =>
    objectsOf(rawManifests(read(file), file))
      .filter((object) => object.kind === "Stanza")
      .map((stanza) => ({ file, stanza })),
  )

const config = (stanzaConfiguration: Json): Json => withValue(minimalStanza(), CONFIG, stanzaConfiguration)
const repo = (field: string, value: Json | undefined): Json =>
  withValue(minimalStanza(), [...REPO, field], value)
const setting = (field: string, value: Json | undefined): Json =>
  withValue(minimalStanza(), [...CONFIG, field], value)

/** Specs both the API server and the plugin accept. */
export const VALID: ReadonlyArray<readonly [string, Json]> = [
  ["the minimal Stanza", minimalStanza()],
  ["the documented example", documentedStanza()],
  [
    "every optional setting",
    config({
      name: "main",
      s3Repositories: [
        {
          bucket: "b",
          endpoint: "minio:9000",
          region: "r",
          repoPath: "/one",
          cipherConfig: { encryptionPass: { name: "sec", key: "PASS" } },
          endpointCA: { name: "ca", key: "ca.crt" },
        },
        { bucket: "b2", endpoint: "s3.example.com", region: "r", repoPath: "/two", uriStyle: "host" },
      ],
      posixRepositories: [
        {
          repoPath: "/var/lib/pgbackrest",
          retentionPolicy: {
            full: 2,
            fullType: "count",
            diff: 3,
            archive: 1,
            archiveType: "diff",
            history: 0,
          },
          cipherConfig: { type: "aes-256-cbc", encryptionPass: { name: "sec", key: "PASS" } },
        },
      ],
      azureRepositories: [],
      archive: { async: true, pushQueueMax: "1GiB", getQueueMax: "128MiB" },
      processMax: 4,
      compressConfig: { type: "lz4", level: 1 },
      startFast: false,
      delta: false,
      logLevel: "info",
      customEnvVar: { PGBACKREST_IO_TIMEOUT: "120" },
    }),
  ],
  ["posix repositories only", config({ name: "main", posixRepositories: [{ repoPath: "/backups" }] })],
  ["an IPv6 endpoint", repo("endpoint", "https://[fd00::1]:9000")],
  ["an https endpoint with a trailing slash", repo("endpoint", "https://s3.example.com/")],
  ["an endpoint with a port", repo("endpoint", "s3.eu-west-3.amazonaws.com:443")],
  ["repoPath /", repo("repoPath", "/")],
  ["repoPath with dotted names", repo("repoPath", "/a/.b/..c/.../.")],
  [
    "both keys of a secretRef",
    repo("secretRef", { accessKeyId: { name: "s", key: "a" }, secretAccessKey: { name: "s", key: "b" } }),
  ],
  ["an empty secretRef", repo("secretRef", {})],
  [
    "the largest retention",
    repo("retentionPolicy", { full: 9999999, diff: 9999999, archive: 9999999, history: 9999999 }),
  ],
  ["the smallest retention", repo("retentionPolicy", { full: 1, diff: 1, archive: 1, history: 0 })],
  ["retention by time", repo("retentionPolicy", { full: 30, fullType: "time", archiveType: "incr" })],
  ["verifyTLS false", repo("verifyTLS", false)],
  ["uriStyle path", repo("uriStyle", "path")],
  ["compression level -5", setting("compressConfig", { type: "zst", level: -5 })],
  ["compression level 22", setting("compressConfig", { type: "zst", level: 22 })],
  ["bz2 and gz", setting("compressConfig", { type: "bz2" })],
  ["processMax 1", setting("processMax", 1)],
  ["processMax 999", setting("processMax", 999)],
  ["logLevel off", setting("logLevel", "off")],
  ["logLevel trace", setting("logLevel", "trace")],
  [
    "sizes with a space or without a unit",
    setting("archive", { pushQueueMax: "1 GiB", getQueueMax: "1048576" }),
  ],
  ["an empty archive section", setting("archive", {})],
  ["an empty customEnvVar", setting("customEnvVar", {})],
  ["a stanza name of 63 characters", setting("name", `a${"b".repeat(62)}`)],
  ["a stanza name with '.', '_' and '-'", setting("name", "0_db.main-1")],
  ["a bucket with '.', '-' and digits", repo("bucket", "pg-backups.eu-1")],
  ["a region with spaces and non-ASCII letters", repo("region", "région de Paris")],
  ["a repoPath with spaces and non-ASCII letters", repo("repoPath", "/sauvegardes/base élève")],
  [
    "customEnvVar values with spaces and punctuation",
    setting("customEnvVar", { PGBACKREST_IO_TIMEOUT: "120", PGBACKREST_REPO1_S3_ROLE: "a role; x=y" }),
  ],
  ["an empty customEnvVar value", setting("customEnvVar", { PGBACKREST_IO_TIMEOUT: "" })],
]

/**
 * What happens to an invalid spec:
 * - `both`: the API server refuses it, and so does the plugin;
 * - `pruned`: the API server drops the field (a misspelt name, a null) and stores the rest, which the
 *   plugin then accepts; `kubectl apply` refuses unknown fields (strict field validation), other
 *   clients get a warning. The plugin refuses the field when it reads manifests itself (local mode);
 * - `plugin`: the API server stores it, the plugin refuses it with an error naming the field (the
 *   CRD cannot say it cheaply; see docs/configuration.md);
 * - `envelope`: not the spec's business: the API server checks kind and metadata itself.
 */
export type Category = "both" | "pruned" | "plugin" | "envelope"

export interface InvalidCase {
  readonly label: string
  readonly category: Category
  readonly spec: Json
  /** For `pruned`: the field the API server drops. */
  readonly prunedField?: string
}

const invalid = (label: string, category: Category, spec: Json, prunedField?: string): InvalidCase =>
  prunedField === undefined ? { label, category, spec } : { label, category, spec, prunedField }

/** The invalid table of test/domain/stanza.test.ts, case by case. */
export const DECODER_TABLE: ReadonlyArray<InvalidCase> = [
  invalid("a missing stanza name", "both", setting("name", undefined)),
  invalid("a stanza name with a slash", "both", setting("name", "a/b")),
  invalid("no repository", "both", setting("s3Repositories", [])),
  invalid("an empty bucket", "both", repo("bucket", "")),
  invalid("a missing region", "both", repo("region", undefined)),
  invalid("a relative repoPath", "both", repo("repoPath", "repo")),
  invalid("a repoPath escaping with ..", "both", repo("repoPath", "/a/../b")),
  invalid("an http endpoint", "both", repo("endpoint", "http://minio:9000")),
  invalid("a bad uriStyle", "both", repo("uriStyle", "virtual")),
  invalid("verifyTLS as a string", "both", repo("verifyTLS", "false")),
  invalid(
    "a misspelt field",
    "pruned",
    repo("verifyTls", false),
    "spec.stanzaConfiguration.s3Repositories[0].verifyTls",
  ),
  invalid("retention full of 0", "both", repo("retentionPolicy", { full: 0 })),
  invalid("negative history", "both", repo("retentionPolicy", { history: -1 })),
  invalid("a bad fullType", "both", repo("retentionPolicy", { fullType: "days" })),
  invalid("half a key pair", "both", repo("secretRef", { accessKeyId: { name: "s", key: "k" } })),
  invalid(
    "a selector without key",
    "both",
    repo("secretRef", { accessKeyId: { name: "s" }, secretAccessKey: { name: "s", key: "k" } }),
  ),
  invalid("a cipher without pass", "both", repo("cipherConfig", { type: "aes-256-cbc" })),
  invalid(
    "an unknown cipher",
    "both",
    repo("cipherConfig", { type: "rot13", encryptionPass: { name: "s", key: "k" } }),
  ),
  invalid("a bad queue size", "both", setting("archive", { pushQueueMax: "lots" })),
  invalid("processMax 0", "both", setting("processMax", 0)),
  invalid("an unknown compression", "both", setting("compressConfig", { type: "xz" })),
  invalid("an unknown log level", "both", setting("logLevel", "verbose")),
  invalid(
    "a custom variable outside PGBACKREST_",
    "plugin",
    setting("customEnvVar", { LD_PRELOAD: "/x.so" }),
  ),
  invalid("Azure repositories", "both", setting("azureRepositories", [{ account: "a" }])),
  invalid("a bucket with a newline", "both", repo("bucket", "backups\nHost: evil")),
  invalid("a region with a carriage return", "both", repo("region", "us-east-1\r")),
  invalid("a repoPath with a newline", "both", repo("repoPath", "/pg\n/main")),
  invalid(
    "a customEnvVar value with NUL",
    "both",
    setting("customEnvVar", { PGBACKREST_IO_TIMEOUT: "60\u0000" }),
  ),
  invalid("a Secret name with a newline", "both", repo("endpointCA", { name: "ca\nevil", key: "ca.crt" })),
  invalid("a wrong kind", "envelope", withValue(minimalStanza(), ["kind"], "Cluster")),
  invalid("no metadata name", "envelope", withValue(minimalStanza(), ["metadata"], {})),
  invalid("no spec", "both", withValue(minimalStanza(), ["spec"], undefined)),
]

/** More cases, at the edges of every constraint. */
export const MORE_INVALID: ReadonlyArray<InvalidCase> = [
  invalid("no stanzaConfiguration", "both", withValue(minimalStanza(), [...CONFIG], undefined)),
  invalid("an empty stanza name", "both", setting("name", "")),
  invalid("a stanza name of 64 characters", "both", setting("name", `a${"b".repeat(63)}`)),
  invalid("a stanza name starting with '-'", "both", setting("name", "-main")),
  invalid("a stanza name as a number", "both", setting("name", 7)),
  invalid("an empty endpoint", "both", repo("endpoint", "")),
  invalid("an endpoint with a path", "both", repo("endpoint", "minio:9000/bucket")),
  invalid("an endpoint with a six-digit port", "both", repo("endpoint", "minio:123456")),
  invalid("an endpoint with a user", "both", repo("endpoint", "https://user@minio")),
  invalid("an empty region", "both", repo("region", "")),
  invalid("an empty repoPath", "both", repo("repoPath", "")),
  invalid("repoPath ending in ..", "both", repo("repoPath", "/a/..")),
  invalid("repoPath ..", "both", repo("repoPath", "..")),
  invalid(
    "a posix repoPath that is relative",
    "both",
    setting("posixRepositories", [{ repoPath: "backups" }]),
  ),
  invalid("retention full above the maximum", "both", repo("retentionPolicy", { full: 10000000 })),
  invalid("retention full of 1.5", "both", repo("retentionPolicy", { full: 1.5 })),
  invalid("retention diff of 0", "both", repo("retentionPolicy", { diff: 0 })),
  invalid("retention archive as a string", "both", repo("retentionPolicy", { archive: "2" })),
  invalid("a bad archiveType", "both", repo("retentionPolicy", { archiveType: "weekly" })),
  invalid("an endpointCA without a name", "both", repo("endpointCA", { key: "ca.crt" })),
  invalid("an empty secret key name", "both", repo("endpointCA", { name: "ca", key: "" })),
  invalid("processMax 1000", "both", setting("processMax", 1000)),
  invalid("compression level 23", "both", setting("compressConfig", { level: 23 })),
  invalid("compression level -6", "both", setting("compressConfig", { level: -6 })),
  invalid("archive.async as a string", "both", setting("archive", { async: "yes" })),
  invalid("a size with an unknown unit", "both", setting("archive", { getQueueMax: "1XB" })),
  invalid("a negative size", "both", setting("archive", { pushQueueMax: "-1GiB" })),
  invalid(
    "a custom variable that is not a string",
    "both",
    setting("customEnvVar", { PGBACKREST_IO_TIMEOUT: 120 }),
  ),
  invalid("s3Repositories as an object", "both", setting("s3Repositories", { bucket: "b" })),
  invalid("Azure repositories of any kind", "both", setting("azureRepositories", ["x"])),
  invalid("startFast as a string", "both", setting("startFast", "true")),
  invalid("a lower-case custom variable", "plugin", setting("customEnvVar", { PGBACKREST_io: "1" })),
  invalid(
    "a field unknown to the spec",
    "pruned",
    withValue(minimalStanza(), ["spec", "extra"], 1),
    "spec.extra",
  ),
  invalid(
    "a null uriStyle",
    "pruned",
    repo("uriStyle", null),
    "spec.stanzaConfiguration.s3Repositories[0].uriStyle",
  ),
  invalid("a null logLevel", "pruned", setting("logLevel", null), "spec.stanzaConfiguration.logLevel"),
  invalid("a bucket with DEL", "both", repo("bucket", "backups\u007f")),
  invalid("a bucket with a tab", "both", repo("bucket", "back\tups")),
  invalid("a region with NUL", "both", repo("region", "\u0000")),
  invalid("a repoPath with NUL", "both", repo("repoPath", "/pg/main\u0000")),
  invalid("a repoPath with a trailing newline", "both", repo("repoPath", "/pg/main\n")),
  invalid(
    "a posix repoPath with a newline",
    "both",
    setting("posixRepositories", [{ repoPath: "/backups\n" }]),
  ),
  invalid(
    "a customEnvVar value with a newline",
    "both",
    setting("customEnvVar", { PGBACKREST_IO_TIMEOUT: "60\nPGBACKREST_X=1" }),
  ),
  invalid(
    "a Secret key with an escape character",
    "both",
    repo("secretRef", {
      accessKeyId: { name: "s", key: "\u001b[2Ja" },
      secretAccessKey: { name: "s", key: "b" },
    }),
  ),
  invalid(
    "a cipher passphrase Secret name with NUL",
    "both",
    setting("posixRepositories", [
      { repoPath: "/q", cipherConfig: { encryptionPass: { name: "s\u0000", key: "k" } } },
    ]),
  ),
]
