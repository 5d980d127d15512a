import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Either, Layer } from "effect"
import { type CliCommand, type ClientCall, parseCommandLine, type SocketRole, USAGE } from "./cli/args.js"
import { LoggingLive } from "./cli/logging.js"
import { archiveWal, backupStatusOf, checkHealth, takeBackup } from "./cli/pluginClient.js"
import { restoreJob, restoreWal } from "./cli/restoreClient.js"
import { PLUGIN_NAME, PLUGIN_VERSION, socketPath } from "./domain/plugin.js"
import { InstanceLive, RestoreLive, type SocketRoleSettings } from "./instance/layer.js"
import { OperatorLive } from "./operator/layer.js"

const HEALTHCHECK_TIMEOUT_MS = 5_000

const serve = <E>(
  role: string,
  command: Extract<CliCommand, { logLevel: unknown }>,
  live: Layer.Layer<never, E>,
) =>
  Effect.logInfo("starting").pipe(
    Effect.zipRight(Layer.launch(live)),
    Effect.onInterrupt(() => Effect.logInfo("stopped")),
    Effect.tapErrorCause((cause) => Effect.logError("stopped on error", cause)),
    Effect.annotateLogs({ role, plugin: PLUGIN_NAME, version: PLUGIN_VERSION }),
    Effect.provide(LoggingLive(command.logLevel)),
  )

const socketSettings = (command: SocketRole): SocketRoleSettings => ({
  socketPath: socketPath(command.pluginPath),
  ...(command.manifests === undefined ? {} : { manifests: command.manifests }),
})

const print = (value: unknown) =>
  Effect.sync(() => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`))

// The client subcommands scan the plugin directory as CloudNativePG's instance manager does.
const clientProgram = (command: ClientCall) => {
  const pluginDir = command.pluginPath
  switch (command.rpc) {
    case "wal-archive":
      return archiveWal(pluginDir, command.clusterFile, command.walPath)
    case "backup":
      return takeBackup(pluginDir, command).pipe(
        Effect.flatMap((result) => print({ status: backupStatusOf(result) })),
      )
    case "wal-restore":
      return restoreWal(pluginDir, command.clusterFile, command.walName, command.destination)
    case "restore":
      return restoreJob(pluginDir, command.clusterFile).pipe(Effect.flatMap(print))
  }
}

const programOf = (command: CliCommand): Effect.Effect<void, unknown> => {
  switch (command._tag) {
    case "Help":
      return Effect.sync(() => process.stdout.write(USAGE))
    case "Version":
      return Effect.sync(() => process.stdout.write(`${PLUGIN_VERSION}\n`))
    case "Instance":
      return serve("instance", command, InstanceLive(socketSettings(command)))
    case "Restore":
      return serve("restore", command, RestoreLive(socketSettings(command)))
    case "Operator":
      return serve(
        "operator",
        command,
        OperatorLive({
          serverAddress: command.serverAddress,
          serverCert: command.serverCert,
          serverKey: command.serverKey,
          clientCa: command.clientCert,
        }),
      )
    case "Client":
      return clientProgram(command).pipe(
        Effect.tapError((error) => Effect.logError(`${command.rpc} failed: ${error.message}`)),
        Effect.provide(LoggingLive(command.logLevel, "stderr")),
      )
    case "Healthcheck":
      return checkHealth(socketPath(command.pluginPath), HEALTHCHECK_TIMEOUT_MS).pipe(
        Effect.tapError((error) => Effect.logError(`unhealthy: ${error.message}`)),
        Effect.provide(LoggingLive(command.logLevel, "stderr")),
      )
  }
}

Either.match(parseCommandLine(process.argv.slice(2)), {
  onLeft: (error) => {
    process.stderr.write(`cnpg-pgbackrest: ${error.message}\n\n${USAGE}`)
    process.exitCode = 2
  },
  // Errors are logged by the program itself, as JSON lines, rather than by runMain's reporter (which
  // would print them a second time, in a human format that log collectors cannot parse).
  onRight: (command) =>
    NodeRuntime.runMain(programOf(command), { disableErrorReporting: true, disablePrettyLogger: true }),
})
