import type { Redacted } from "effect"
import {
  type Repository,
  type RetentionPolicy,
  repositories,
  type S3Repository,
  type SecretKeySelector,
  type StanzaConfiguration,
} from "./stanza.js"

/**
 * Translation of a Stanza into pgBackRest options. Options travel as `PGBACKREST_*` environment
 * variables of the child process, never as arguments: argv is readable by every process of the pod.
 * Secret values stay `Redacted` until the moment the child is spawned.
 */
export type PgBackRestEnv = Readonly<Record<string, string | Redacted.Redacted<string>>>

/** Where a Stanza's secret values come from, with the Stanza field that names each. */
export interface SecretUse {
  readonly repository: number
  readonly purpose: "accessKeyId" | "secretAccessKey" | "encryptionPass" | "endpointCA"
  readonly ref: SecretKeySelector
  readonly field: string
}

/** Secret values of one repository, resolved; `caFile` is the path the CA bundle was written to. */
export interface RepositorySecrets {
  readonly accessKeyId?: Redacted.Redacted<string>
  readonly secretAccessKey?: Redacted.Redacted<string>
  readonly encryptionPass?: Redacted.Redacted<string>
  readonly caFile?: string
}

/** The PostgreSQL instance pgBackRest works on, and the sidecar's writable paths. */
export interface InstanceContext {
  readonly pgData: string
  readonly pgSocketDir: string
  readonly pgPort: number
  readonly lockPath: string
  readonly spoolPath: string
}

export const secretUses = (config: StanzaConfiguration): ReadonlyArray<SecretUse> =>
  repositories(config).flatMap((repo) => {
    const uses: Array<SecretUse> = []
    const use = (purpose: SecretUse["purpose"], ref: SecretKeySelector | undefined, field: string) => {
      if (ref !== undefined) {
        uses.push({ repository: repo.number, purpose, ref, field: `${repo.field}.${field}` })
      }
    }
    if (repo.kind === "s3") {
      use("accessKeyId", repo.spec.secretRef?.accessKeyId, "secretRef.accessKeyId")
      use("secretAccessKey", repo.spec.secretRef?.secretAccessKey, "secretRef.secretAccessKey")
    }
    use("encryptionPass", repo.spec.cipherConfig?.encryptionPass, "cipherConfig.encryptionPass")
    if (repo.kind === "s3") {
      use("endpointCA", repo.spec.endpointCA, "endpointCA")
    }
    return uses
  })

/** `https://minio.example:9000/` -> host `minio.example`, port 9000. The schema already checked the form. */
export const parseEndpoint = (endpoint: string): { readonly host: string; readonly port?: number } => {
  const bare = endpoint.replace(/^https:\/\//, "").replace(/\/$/, "")
  const match = /^(\[[^\]]+\]|[^:]+)(?::([0-9]+))?$/.exec(bare)
  const host = match?.[1] ?? bare
  const port = match?.[2]
  return port === undefined ? { host } : { host, port: Number(port) }
}

const yesNo = (value: boolean): string => (value ? "y" : "n")

const retentionEnv = (prefix: string, retention: RetentionPolicy | undefined): Record<string, string> => {
  const env: Record<string, string> = {}
  if (retention === undefined) {
    return env
  }
  const set = (name: string, value: string | number | undefined) => {
    if (value !== undefined) {
      env[`${prefix}_RETENTION_${name}`] = String(value)
    }
  }
  set("FULL", retention.full)
  set("FULL_TYPE", retention.fullType)
  set("DIFF", retention.diff)
  set("ARCHIVE", retention.archive)
  set("ARCHIVE_TYPE", retention.archiveType)
  set("HISTORY", retention.history)
  return env
}

const s3RepositoryEnv = (
  number: number,
  repo: S3Repository,
  secrets: RepositorySecrets,
): Record<string, string | Redacted.Redacted<string>> => {
  const prefix = `PGBACKREST_REPO${number}`
  const { host, port } = parseEndpoint(repo.endpoint)
  const env: Record<string, string | Redacted.Redacted<string>> = {
    [`${prefix}_TYPE`]: "s3",
    [`${prefix}_PATH`]: repo.repoPath,
    [`${prefix}_S3_BUCKET`]: repo.bucket,
    [`${prefix}_S3_ENDPOINT`]: host,
    [`${prefix}_S3_REGION`]: repo.region,
    [`${prefix}_STORAGE_VERIFY_TLS`]: yesNo(repo.verifyTLS),
    ...retentionEnv(prefix, repo.retentionPolicy),
  }
  if (port !== undefined) {
    env[`${prefix}_STORAGE_PORT`] = String(port)
  }
  if (repo.uriStyle !== undefined) {
    env[`${prefix}_S3_URI_STYLE`] = repo.uriStyle
  }
  if (secrets.accessKeyId !== undefined && secrets.secretAccessKey !== undefined) {
    env[`${prefix}_S3_KEY`] = secrets.accessKeyId
    env[`${prefix}_S3_KEY_SECRET`] = secrets.secretAccessKey
  } else {
    // No static keys: let pgBackRest find credentials itself (instance profile, IRSA).
    env[`${prefix}_S3_KEY_TYPE`] = "auto"
  }
  if (secrets.caFile !== undefined) {
    env[`${prefix}_STORAGE_CA_FILE`] = secrets.caFile
  }
  return env
}

const repositoryEnv = (
  repo: Repository,
  secrets: RepositorySecrets,
): Record<string, string | Redacted.Redacted<string>> => {
  const prefix = `PGBACKREST_REPO${repo.number}`
  const env =
    repo.kind === "s3"
      ? s3RepositoryEnv(repo.number, repo.spec, secrets)
      : {
          [`${prefix}_TYPE`]: "posix",
          [`${prefix}_PATH`]: repo.spec.repoPath,
          ...retentionEnv(prefix, repo.spec.retentionPolicy),
        }
  if (repo.spec.cipherConfig !== undefined && secrets.encryptionPass !== undefined) {
    env[`${prefix}_CIPHER_TYPE`] = repo.spec.cipherConfig.type
    env[`${prefix}_CIPHER_PASS`] = secrets.encryptionPass
  }
  return env
}

/**
 * The complete pgBackRest environment for a Stanza on an instance. Managed options win over
 * `customEnvVar`, so a custom variable can add an option but never replace a credential or the stanza.
 */
export const stanzaEnv = (
  config: StanzaConfiguration,
  secrets: ReadonlyArray<RepositorySecrets>,
  instance: InstanceContext,
): PgBackRestEnv => {
  const env: Record<string, string | Redacted.Redacted<string>> = { ...config.customEnvVar }
  Object.assign(env, {
    // The Stanza is the whole configuration: Debian's /etc/pgbackrest.conf (repo1-path=...) must not
    // add options behind its back.
    PGBACKREST_CONFIG: "/dev/null",
    PGBACKREST_STANZA: config.name,
    PGBACKREST_PG1_PATH: instance.pgData,
    PGBACKREST_PG1_SOCKET_PATH: instance.pgSocketDir,
    PGBACKREST_PG1_PORT: String(instance.pgPort),
    PGBACKREST_LOCK_PATH: instance.lockPath,
    PGBACKREST_SPOOL_PATH: instance.spoolPath,
    // No log files: the sidecar's root filesystem is read-only and its logs go to stdout.
    PGBACKREST_LOG_LEVEL_FILE: "off",
    PGBACKREST_LOG_LEVEL_CONSOLE: config.logLevel ?? "warn",
    PGBACKREST_LOG_LEVEL_STDERR: "warn",
    PGBACKREST_START_FAST: yesNo(config.startFast),
    PGBACKREST_DELTA: yesNo(config.delta),
    PGBACKREST_ARCHIVE_ASYNC: yesNo(config.archive?.async ?? false),
  })
  if (config.processMax !== undefined) {
    env.PGBACKREST_PROCESS_MAX = String(config.processMax)
  }
  if (config.archive?.pushQueueMax !== undefined) {
    env.PGBACKREST_ARCHIVE_PUSH_QUEUE_MAX = config.archive.pushQueueMax
  }
  if (config.archive?.getQueueMax !== undefined) {
    env.PGBACKREST_ARCHIVE_GET_QUEUE_MAX = config.archive.getQueueMax
  }
  if (config.compressConfig?.type !== undefined) {
    env.PGBACKREST_COMPRESS_TYPE = config.compressConfig.type
  }
  if (config.compressConfig?.level !== undefined) {
    env.PGBACKREST_COMPRESS_LEVEL = String(config.compressConfig.level)
  }
  for (const repo of repositories(config)) {
    Object.assign(env, repositoryEnv(repo, secrets[repo.number - 1] ?? {}))
  }
  return env
}

/**
 * What identifies a stanza's initialisation: its name and where each repository is. Adding or
 * moving a repository changes it, so `stanza-create` runs again for the new layout.
 */
export const stanzaFingerprint = (config: StanzaConfiguration): string =>
  JSON.stringify({
    stanza: config.name,
    repositories: repositories(config).map((repo) =>
      repo.kind === "s3"
        ? {
            type: "s3",
            endpoint: parseEndpoint(repo.spec.endpoint),
            bucket: repo.spec.bucket,
            path: repo.spec.repoPath,
            cipher: repo.spec.cipherConfig?.type ?? "none",
          }
        : { type: "posix", path: repo.spec.repoPath, cipher: repo.spec.cipherConfig?.type ?? "none" },
    ),
  })
