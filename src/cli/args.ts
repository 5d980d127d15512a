import { parseArgs } from "node:util"
import { Data, Either } from "effect"
import { LOG_LEVELS, type LogLevelName } from "../domain/logLine.js"

export interface CommonOptions {
  readonly logLevel: LogLevelName
  readonly pluginPath: string
}

/** `instance` and `restore` serve CNPG-I on `<pluginPath>/pgbackrest.dalibo.com`. */
export interface SocketRole extends CommonOptions {
  readonly _tag: "Instance" | "Restore"
  /** Local mode: read Clusters, Stanzas and Secrets from these manifests instead of the Kubernetes API. */
  readonly manifests?: string
}

/** `client wal-archive`: calls the plugin's socket the way CloudNativePG's archive_command does. */
export interface ClientWalArchive extends CommonOptions {
  readonly _tag: "Client"
  readonly rpc: "wal-archive"
  /** A manifest of the Cluster, sent as `cluster_definition`. */
  readonly clusterFile: string
  readonly walPath: string
}

/** `client backup`: sends Backup.Backup like `/controller/manager backup` in the instance's pod. */
export interface ClientBackup extends CommonOptions {
  readonly _tag: "Client"
  readonly rpc: "backup"
  readonly clusterFile: string
  /** A Backup manifest; without one, a Backup named `backupName` is made up. */
  readonly backupFile?: string
  readonly backupName?: string
  /** `--parameter key=value`, as in `spec.pluginConfiguration.parameters`. */
  readonly parameters: Readonly<Record<string, string>>
}

/** `client wal-restore`: calls WAL.Restore like CloudNativePG's restore_command. */
export interface ClientWalRestore extends CommonOptions {
  readonly _tag: "Client"
  readonly rpc: "wal-restore"
  readonly clusterFile: string
  readonly walName: string
  readonly destination: string
}

/** `client restore`: calls RestoreJobHooks.Restore like the full-recovery Job. */
export interface ClientRestore extends CommonOptions {
  readonly _tag: "Client"
  readonly rpc: "restore"
  readonly clusterFile: string
}

export type ClientCall = ClientWalArchive | ClientBackup | ClientWalRestore | ClientRestore

/** `operator` serves CNPG-I over TCP with mutual TLS. */
export interface OperatorRole extends CommonOptions {
  readonly _tag: "Operator"
  readonly serverAddress: string
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCert: string
}

export interface Healthcheck extends CommonOptions {
  readonly _tag: "Healthcheck"
}

export interface Help {
  readonly _tag: "Help"
}

export interface Version {
  readonly _tag: "Version"
}

export type CliCommand = SocketRole | OperatorRole | Healthcheck | ClientCall | Help | Version

/** A command line we cannot run: printed with the usage text, exit code 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

export const USAGE = `Usage: cnpg-pgbackrest <role> [flags]

Roles:
  instance      serve CNPG-I (WAL, backup) on <plugin-path>/pgbackrest.dalibo.com (PostgreSQL pod sidecar)
  restore       serve CNPG-I (restore job hooks, WAL restore) on the same socket (full-recovery Job sidecar)
  operator      serve CNPG-I (lifecycle, reconciler, operator) over TCP with mutual TLS
  healthcheck   exit 0 when the plugin socket answers as serving (startupProbe)
  client wal-archive <wal-path> --cluster FILE
                send WAL.Archive to the socket like CloudNativePG's archive_command (exit 0 = archived)
  client backup --cluster FILE [--backup FILE | --backup-name NAME] [--parameter KEY=VALUE]...
                send Backup.Backup like CloudNativePG's instance manager; prints the Backup status
  client wal-restore <wal-name> <destination> --cluster FILE
                send WAL.Restore like CloudNativePG's restore_command (exit 0 = restored)
  client restore --cluster FILE
                send RestoreJobHooks.Restore like the full-recovery Job; prints the restore configuration

Flags:
  --plugin-path DIR       directory of the plugin socket (default /plugins)
  --log-level LEVEL       error|warning|info|debug|trace (default info)
  --manifests DIR         instance, restore: read Cluster, Stanza and Secret manifests from DIR (local mode)
  --cluster FILE          client: the Cluster manifest to send
  --server-address ADDR   operator: address to listen on (default [::]:9090, IPv6 and IPv4)
  --server-cert FILE      operator: server certificate (PEM)
  --server-key FILE       operator: server private key (PEM)
  --client-cert FILE      operator: CA certificate that client certificates must chain to (PEM)
  -h, --help              show this help
  -v, --version           show the version
`

const ROLE_FLAGS = {
  "log-level": { type: "string" },
  "plugin-path": { type: "string" },
} as const

const SOCKET_ROLE_FLAGS = {
  ...ROLE_FLAGS,
  manifests: { type: "string" },
} as const

const CLIENT_FLAGS = {
  ...ROLE_FLAGS,
  cluster: { type: "string" },
  backup: { type: "string" },
  "backup-name": { type: "string" },
  parameter: { type: "string", multiple: true },
} as const

const OPERATOR_FLAGS = {
  ...ROLE_FLAGS,
  "server-address": { type: "string" },
  "server-cert": { type: "string" },
  "server-key": { type: "string" },
  "client-cert": { type: "string" },
} as const

const isLogLevel = (value: string): value is LogLevelName => LOG_LEVELS.some((level) => level === value)

const parseFlags = <Flags extends typeof ROLE_FLAGS | typeof SOCKET_ROLE_FLAGS | typeof OPERATOR_FLAGS>(
  role: string,
  args: ReadonlyArray<string>,
  flags: Flags,
) =>
  Either.try({
    try: () => parseArgs({ args: [...args], options: flags, strict: true, allowPositionals: false }).values,
    catch: (error) =>
      new UsageError({ reason: `${role}: ${error instanceof Error ? error.message : String(error)}` }),
  })

const parseWithPositionals = (role: string, args: ReadonlyArray<string>) =>
  Either.try({
    try: () => parseArgs({ args: [...args], options: CLIENT_FLAGS, strict: true, allowPositionals: true }),
    catch: (error) =>
      new UsageError({ reason: `${role}: ${error instanceof Error ? error.message : String(error)}` }),
  })

const common = (
  role: string,
  values: { readonly "log-level"?: string | undefined; readonly "plugin-path"?: string | undefined },
): Either.Either<CommonOptions, UsageError> => {
  const logLevel = values["log-level"] ?? "info"
  if (!isLogLevel(logLevel)) {
    return Either.left(
      new UsageError({
        reason: `${role}: --log-level must be one of ${LOG_LEVELS.join(", ")}, got "${logLevel}"`,
      }),
    )
  }
  const pluginPath = values["plugin-path"] ?? "/plugins"
  if (pluginPath === "") {
    return Either.left(new UsageError({ reason: `${role}: --plugin-path must not be empty` }))
  }
  return Either.right({ logLevel, pluginPath })
}

const required = (
  role: string,
  flag: string,
  value: string | undefined,
): Either.Either<string, UsageError> =>
  value === undefined || value === ""
    ? Either.left(new UsageError({ reason: `${role}: --${flag} is required` }))
    : Either.right(value)

const parseParameters = (role: string, pairs: ReadonlyArray<string>) =>
  Either.gen(function* () {
    const parameters: Record<string, string> = {}
    for (const pair of pairs) {
      const separator = pair.indexOf("=")
      if (separator <= 0) {
        return yield* Either.left(
          new UsageError({ reason: `${role}: --parameter takes KEY=VALUE, got "${pair}"` }),
        )
      }
      parameters[pair.slice(0, separator)] = pair.slice(separator + 1)
    }
    return parameters
  })

const parseClient = (args: ReadonlyArray<string>): Either.Either<CliCommand, UsageError> =>
  Either.gen(function* () {
    const [rpc, ...rest] = args
    if (rpc !== "wal-archive" && rpc !== "backup" && rpc !== "wal-restore" && rpc !== "restore") {
      return yield* Either.left(
        new UsageError({
          reason:
            rpc === undefined
              ? "client: an RPC is required (wal-archive, backup, wal-restore, restore)"
              : `client: unknown RPC "${rpc}"`,
        }),
      )
    }
    const role = `client ${rpc}`
    const { values, positionals } = yield* parseWithPositionals(role, rest)
    const options = yield* common(role, values)
    const clusterFile = yield* required(role, "cluster", values.cluster)
    if (rpc === "backup") {
      if (positionals.length > 0) {
        return yield* Either.left(
          new UsageError({ reason: `${role}: unexpected argument "${positionals[0]}"` }),
        )
      }
      if (values.backup !== undefined && values["backup-name"] !== undefined) {
        return yield* Either.left(
          new UsageError({ reason: `${role}: give --backup or --backup-name, not both` }),
        )
      }
      return {
        _tag: "Client",
        rpc,
        ...options,
        clusterFile,
        ...(values.backup === undefined ? {} : { backupFile: values.backup }),
        ...(values["backup-name"] === undefined ? {} : { backupName: values["backup-name"] }),
        parameters: yield* parseParameters(role, values.parameter ?? []),
      } satisfies ClientBackup
    }
    if (
      values.backup !== undefined ||
      values["backup-name"] !== undefined ||
      values.parameter !== undefined
    ) {
      return yield* Either.left(
        new UsageError({ reason: `${role}: --backup, --backup-name and --parameter are for client backup` }),
      )
    }
    if (rpc === "restore") {
      if (positionals.length > 0) {
        return yield* Either.left(
          new UsageError({ reason: `${role}: unexpected argument "${positionals[0]}"` }),
        )
      }
      return { _tag: "Client", rpc, ...options, clusterFile } satisfies ClientRestore
    }
    if (rpc === "wal-restore") {
      const [walName, destination, ...more] = positionals
      if (walName === undefined || destination === undefined || more.length > 0) {
        return yield* Either.left(
          new UsageError({ reason: `${role}: a WAL name and a destination are required` }),
        )
      }
      return { _tag: "Client", rpc, ...options, clusterFile, walName, destination } satisfies ClientWalRestore
    }
    const [walPath, ...extra] = positionals
    if (walPath === undefined || walPath === "" || extra.length > 0) {
      return yield* Either.left(new UsageError({ reason: `${role}: exactly one WAL path is required` }))
    }
    return { _tag: "Client", rpc, ...options, clusterFile, walPath } satisfies ClientWalArchive
  })

/** Parses `process.argv.slice(2)`; pure, so every rejection is testable without a process. */
export const parseCommandLine = (argv: ReadonlyArray<string>): Either.Either<CliCommand, UsageError> => {
  const [role, ...rest] = argv
  switch (role) {
    case undefined:
      return Either.left(new UsageError({ reason: "a role is required" }))
    case "-h":
    case "--help":
    case "help":
      return Either.right({ _tag: "Help" })
    case "-v":
    case "--version":
    case "version":
      return Either.right({ _tag: "Version" })
    case "instance":
    case "restore":
      return Either.gen(function* () {
        const values = yield* parseFlags(role, rest, SOCKET_ROLE_FLAGS)
        const options = yield* common(role, values)
        const manifests = values.manifests
        return {
          _tag: role === "instance" ? "Instance" : "Restore",
          ...options,
          ...(manifests === undefined ? {} : { manifests: yield* required(role, "manifests", manifests) }),
        } satisfies SocketRole
      })
    case "healthcheck":
      return parseFlags(role, rest, ROLE_FLAGS).pipe(
        Either.flatMap((values) => common(role, values)),
        Either.map((options): CliCommand => ({ _tag: "Healthcheck", ...options })),
      )
    case "client":
      return parseClient(rest)
    case "operator":
      return Either.gen(function* () {
        const values = yield* parseFlags(role, rest, OPERATOR_FLAGS)
        const options = yield* common(role, values)
        return {
          _tag: "Operator",
          ...options,
          serverAddress: values["server-address"] ?? "[::]:9090",
          serverCert: yield* required(role, "server-cert", values["server-cert"]),
          serverKey: yield* required(role, "server-key", values["server-key"]),
          clientCert: yield* required(role, "client-cert", values["client-cert"]),
        } satisfies OperatorRole
      })
    default:
      return Either.left(new UsageError({ reason: `unknown role "${role}"` }))
  }
}
