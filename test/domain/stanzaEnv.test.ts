import { assert, describe, it } from "@effect/vitest"
import { Either, Redacted } from "effect"
import { decodeStanza, type StanzaConfiguration } from "../../src/domain/stanza.js"
import {
  type InstanceContext,
  parseEndpoint,
  secretUses,
  stanzaEnv,
  stanzaFingerprint,
} from "../../src/domain/stanzaEnv.js"

const instance: InstanceContext = {
  pgData: "/var/lib/postgresql/data/pgdata",
  pgSocketDir: "/controller/run",
  pgPort: 5432,
  lockPath: "/controller/tmp/pgbackrest/lock",
  spoolPath: "/var/lib/postgresql/wal/pgbackrest-spool",
}

const config = (stanzaConfiguration: unknown): StanzaConfiguration => {
  const result = decodeStanza({ metadata: { name: "s" }, spec: { stanzaConfiguration } })
  if (Either.isLeft(result)) {
    assert.fail(result.left.message)
  }
  return result.right.spec.stanzaConfiguration
}

const plain = (value: string | Redacted.Redacted<string> | undefined): string | undefined =>
  value === undefined ? undefined : Redacted.isRedacted(value) ? `redacted:${Redacted.value(value)}` : value

const s3 = (extra: Record<string, unknown> = {}) => ({
  bucket: "bucket-01",
  endpoint: "https://minio.example:9000",
  region: "fr-par",
  repoPath: "/repo-01",
  secretRef: { accessKeyId: { name: "minio", key: "ID" }, secretAccessKey: { name: "minio", key: "SECRET" } },
  ...extra,
})

describe("stanzaEnv", () => {
  it("translates a repository, keeping credentials redacted", () => {
    const env = stanzaEnv(
      config({ name: "main", s3Repositories: [s3({ uriStyle: "path" })] }),
      [{ accessKeyId: Redacted.make("AKIA"), secretAccessKey: Redacted.make("s3cr3t") }],
      instance,
    )
    assert.deepInclude(Object.fromEntries(Object.entries(env).map(([key, value]) => [key, plain(value)])), {
      PGBACKREST_STANZA: "main",
      PGBACKREST_REPO1_TYPE: "s3",
      PGBACKREST_REPO1_PATH: "/repo-01",
      PGBACKREST_REPO1_S3_BUCKET: "bucket-01",
      PGBACKREST_REPO1_S3_ENDPOINT: "minio.example",
      PGBACKREST_REPO1_STORAGE_PORT: "9000",
      PGBACKREST_REPO1_S3_REGION: "fr-par",
      PGBACKREST_REPO1_S3_URI_STYLE: "path",
      PGBACKREST_REPO1_STORAGE_VERIFY_TLS: "y",
      PGBACKREST_REPO1_S3_KEY: "redacted:AKIA",
      PGBACKREST_REPO1_S3_KEY_SECRET: "redacted:s3cr3t",
      PGBACKREST_PG1_PATH: "/var/lib/postgresql/data/pgdata",
      PGBACKREST_PG1_SOCKET_PATH: "/controller/run",
      PGBACKREST_PG1_PORT: "5432",
      PGBACKREST_LOCK_PATH: "/controller/tmp/pgbackrest/lock",
      PGBACKREST_SPOOL_PATH: "/var/lib/postgresql/wal/pgbackrest-spool",
      PGBACKREST_LOG_LEVEL_FILE: "off",
      PGBACKREST_ARCHIVE_ASYNC: "n",
    })
    const secrets = Object.values(env).filter(Redacted.isRedacted)
    assert.strictEqual(secrets.length, 2, "only the two credentials are secret values")
  })

  it("keeps TLS verification on unless the manifest turns it off", () => {
    const on = stanzaEnv(config({ name: "m", s3Repositories: [s3()] }), [], instance)
    assert.strictEqual(on.PGBACKREST_REPO1_STORAGE_VERIFY_TLS, "y")
    const off = stanzaEnv(config({ name: "m", s3Repositories: [s3({ verifyTLS: false })] }), [], instance)
    assert.strictEqual(off.PGBACKREST_REPO1_STORAGE_VERIFY_TLS, "n")
  })

  it("passes every retention setting, history included", () => {
    const env = stanzaEnv(
      config({
        name: "m",
        s3Repositories: [
          s3({
            retentionPolicy: {
              full: 7,
              fullType: "time",
              diff: 14,
              archive: 2,
              archiveType: "diff",
              history: 30,
            },
          }),
        ],
      }),
      [],
      instance,
    )
    assert.deepInclude(env, {
      PGBACKREST_REPO1_RETENTION_FULL: "7",
      PGBACKREST_REPO1_RETENTION_FULL_TYPE: "time",
      PGBACKREST_REPO1_RETENTION_DIFF: "14",
      PGBACKREST_REPO1_RETENTION_ARCHIVE: "2",
      PGBACKREST_REPO1_RETENTION_ARCHIVE_TYPE: "diff",
      PGBACKREST_REPO1_RETENTION_HISTORY: "30",
    })
    const zero = stanzaEnv(
      config({ name: "m", s3Repositories: [s3({ retentionPolicy: { history: 0 } })] }),
      [],
      instance,
    )
    assert.strictEqual(zero.PGBACKREST_REPO1_RETENTION_HISTORY, "0")
  })

  it("numbers repositories in list order from 1, each with its own secrets", () => {
    const env = stanzaEnv(
      config({
        name: "m",
        s3Repositories: [
          s3(),
          { bucket: "second", endpoint: "s3.eu-west-3.amazonaws.com", region: "eu-west-3", repoPath: "/two" },
        ],
      }),
      [{ accessKeyId: Redacted.make("one-id"), secretAccessKey: Redacted.make("one-secret") }, {}],
      instance,
    )
    assert.strictEqual(env.PGBACKREST_REPO1_S3_BUCKET, "bucket-01")
    assert.strictEqual(env.PGBACKREST_REPO2_S3_BUCKET, "second")
    assert.strictEqual(env.PGBACKREST_REPO2_S3_ENDPOINT, "s3.eu-west-3.amazonaws.com")
    assert.isUndefined(env.PGBACKREST_REPO2_STORAGE_PORT)
    assert.strictEqual(
      env.PGBACKREST_REPO2_S3_KEY_TYPE,
      "auto",
      "no keys: pgBackRest finds credentials itself",
    )
    assert.isUndefined(env.PGBACKREST_REPO2_S3_KEY)
    assert.isUndefined(env.PGBACKREST_REPO3_TYPE)
  })

  it("sets the cipher with its passphrase and the CA file", () => {
    const env = stanzaEnv(
      config({
        name: "m",
        s3Repositories: [
          s3({
            cipherConfig: { encryptionPass: { name: "c", key: "PASS" } },
            endpointCA: { name: "ca", key: "ca.crt" },
          }),
        ],
      }),
      [
        {
          accessKeyId: Redacted.make("i"),
          secretAccessKey: Redacted.make("s"),
          encryptionPass: Redacted.make("p4ss"),
          caFile: "/tmp/ca-1.pem",
        },
      ],
      instance,
    )
    assert.strictEqual(env.PGBACKREST_REPO1_CIPHER_TYPE, "aes-256-cbc")
    assert.strictEqual(plain(env.PGBACKREST_REPO1_CIPHER_PASS), "redacted:p4ss")
    assert.strictEqual(env.PGBACKREST_REPO1_STORAGE_CA_FILE, "/tmp/ca-1.pem")
  })

  it("translates archiving, parallelism, compression and log level", () => {
    const env = stanzaEnv(
      config({
        name: "m",
        s3Repositories: [s3()],
        archive: { async: true, pushQueueMax: "1GiB", getQueueMax: "256MiB" },
        processMax: 4,
        compressConfig: { type: "zst", level: 3 },
        startFast: false,
        delta: false,
        logLevel: "detail",
      }),
      [],
      instance,
    )
    assert.deepInclude(env, {
      PGBACKREST_ARCHIVE_ASYNC: "y",
      PGBACKREST_ARCHIVE_PUSH_QUEUE_MAX: "1GiB",
      PGBACKREST_ARCHIVE_GET_QUEUE_MAX: "256MiB",
      PGBACKREST_PROCESS_MAX: "4",
      PGBACKREST_COMPRESS_TYPE: "zst",
      PGBACKREST_COMPRESS_LEVEL: "3",
      PGBACKREST_START_FAST: "n",
      PGBACKREST_DELTA: "n",
      PGBACKREST_LOG_LEVEL_CONSOLE: "detail",
    })
  })

  it("lets custom variables add options but never replace managed ones", () => {
    const env = stanzaEnv(
      config({
        name: "main",
        s3Repositories: [s3()],
        customEnvVar: {
          PGBACKREST_IO_TIMEOUT: "120",
          PGBACKREST_STANZA: "other",
          PGBACKREST_REPO1_S3_KEY: "mine",
        },
      }),
      [{ accessKeyId: Redacted.make("real"), secretAccessKey: Redacted.make("real-secret") }],
      instance,
    )
    assert.strictEqual(env.PGBACKREST_IO_TIMEOUT, "120")
    assert.strictEqual(env.PGBACKREST_STANZA, "main")
    assert.strictEqual(plain(env.PGBACKREST_REPO1_S3_KEY), "redacted:real")
  })
})

describe("secretUses", () => {
  it("lists every secret a Stanza needs, with the field that names it", () => {
    const uses = secretUses(
      config({
        name: "m",
        s3Repositories: [
          s3({ cipherConfig: { encryptionPass: { name: "c", key: "PASS" } } }),
          {
            bucket: "b",
            endpoint: "e.com",
            region: "r",
            repoPath: "/p",
            endpointCA: { name: "ca", key: "ca.crt" },
          },
        ],
      }),
    )
    assert.deepStrictEqual(
      uses.map((use) => [use.repository, use.purpose, use.ref.name, use.ref.key, use.field]),
      [
        [1, "accessKeyId", "minio", "ID", "spec.stanzaConfiguration.s3Repositories[0].secretRef.accessKeyId"],
        [
          1,
          "secretAccessKey",
          "minio",
          "SECRET",
          "spec.stanzaConfiguration.s3Repositories[0].secretRef.secretAccessKey",
        ],
        [
          1,
          "encryptionPass",
          "c",
          "PASS",
          "spec.stanzaConfiguration.s3Repositories[0].cipherConfig.encryptionPass",
        ],
        [2, "endpointCA", "ca", "ca.crt", "spec.stanzaConfiguration.s3Repositories[1].endpointCA"],
      ],
    )
  })
})

describe("parseEndpoint", () => {
  it("splits scheme, host and port", () => {
    assert.deepStrictEqual(parseEndpoint("https://172.18.0.2:9000"), { host: "172.18.0.2", port: 9000 })
    assert.deepStrictEqual(parseEndpoint("minio.minio.svc:9000"), { host: "minio.minio.svc", port: 9000 })
    assert.deepStrictEqual(parseEndpoint("s3.amazonaws.com"), { host: "s3.amazonaws.com" })
    assert.deepStrictEqual(parseEndpoint("https://[::1]:9443/"), { host: "[::1]", port: 9443 })
  })
})

describe("stanzaFingerprint", () => {
  it("changes when a repository is added or moved, not when retention changes", () => {
    const one = config({ name: "m", s3Repositories: [s3()] })
    const same = config({ name: "m", s3Repositories: [s3({ retentionPolicy: { full: 2 } })] })
    const two = config({ name: "m", s3Repositories: [s3(), s3({ bucket: "other" })] })
    const moved = config({ name: "m", s3Repositories: [s3({ repoPath: "/elsewhere" })] })
    assert.strictEqual(stanzaFingerprint(one), stanzaFingerprint(same))
    assert.notStrictEqual(stanzaFingerprint(one), stanzaFingerprint(two))
    assert.notStrictEqual(stanzaFingerprint(one), stanzaFingerprint(moved))
  })
})

describe("posix repositories", () => {
  it("are numbered after the S3 ones, with their own retention and cipher", () => {
    const stanza = config({
      name: "m",
      s3Repositories: [s3()],
      posixRepositories: [
        {
          repoPath: "/mnt/backups",
          retentionPolicy: { full: 2 },
          cipherConfig: { encryptionPass: { name: "c", key: "P" } },
        },
      ],
    })
    const uses = secretUses(stanza)
    assert.deepStrictEqual(
      uses.filter((use) => use.repository === 2).map((use) => [use.purpose, use.field]),
      [["encryptionPass", "spec.stanzaConfiguration.posixRepositories[0].cipherConfig.encryptionPass"]],
    )
    const env = stanzaEnv(stanza, [{}, { encryptionPass: Redacted.make("pp") }], instance)
    assert.strictEqual(env.PGBACKREST_REPO1_TYPE, "s3")
    assert.deepInclude(env, {
      PGBACKREST_REPO2_TYPE: "posix",
      PGBACKREST_REPO2_PATH: "/mnt/backups",
      PGBACKREST_REPO2_RETENTION_FULL: "2",
      PGBACKREST_REPO2_CIPHER_TYPE: "aes-256-cbc",
    })
    assert.strictEqual(plain(env.PGBACKREST_REPO2_CIPHER_PASS), "redacted:pp")
    assert.isUndefined(env.PGBACKREST_REPO2_S3_BUCKET)
  })

  it("may stand alone, and count as a layout change", () => {
    const alone = config({ name: "m", posixRepositories: [{ repoPath: "/mnt/a" }] })
    assert.strictEqual(stanzaEnv(alone, [], instance).PGBACKREST_REPO1_TYPE, "posix")
    assert.notStrictEqual(
      stanzaFingerprint(alone),
      stanzaFingerprint(config({ name: "m", posixRepositories: [{ repoPath: "/mnt/b" }] })),
    )
  })
})
