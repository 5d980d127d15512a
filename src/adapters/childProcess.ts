import * as os from "node:os"
import { type Command, CommandExecutor, type Error as PlatformError } from "@effect/platform"
import { Data, type Duration, Effect, Exit, Stream } from "effect"
import { ByteCollector, ByteTail } from "../domain/pgbackrestOutput.js"

/** stdout passed its limit: the child was stopped, and what it printed is not an answer. */
export class OutputTooLarge extends Data.TaggedError("OutputTooLarge")<{ readonly limit: number }> {}

/** What a child printed and how it ended; a non-zero exit code is a value here, not a failure. */
export interface ChildOutput {
  readonly exitCode: number
  /** The whole stdout, at most the runner's limit. */
  readonly stdout: Uint8Array
  /** The end of stderr only. */
  readonly stderr: ByteTail
}

export interface ChildLimits {
  /** Between SIGTERM and SIGKILL when a child is stopped. */
  readonly killGrace: Duration.DurationInput
  /** A child whose stdout passes this is stopped, and the run fails with OutputTooLarge. */
  readonly maxStdoutBytes: number
}

/** A process killed by a signal, as a shell reports it: 128 + the signal's number (-1 if unknown). */
const signalExitCode = (signal: string | undefined): number => {
  const number = Object.entries(os.constants.signals).find(([name]) => name === signal)?.[1]
  return number === undefined ? -1 : 128 + number
}

// The executor reports a leader killed by a signal as an error that names the signal.
const exitCodeOf = (error: PlatformError.PlatformError): number =>
  signalExitCode(/signal: (SIG[A-Z0-9]+)/.exec(error.message)?.[1])

const signalGroup = (pid: number, signal: NodeJS.Signals) =>
  Effect.sync(() => {
    try {
      process.kill(-pid, signal)
    } catch {
      // ESRCH: nothing is left in the group.
    }
  })

/**
 * Runs one child process with bounded memory for its output. A child that is interrupted (a timeout,
 * a cancelled gRPC call) is stopped with its whole process group, so the processes it forked do not
 * outlive it. Built once with the executor; the returned function has no requirements.
 */
export const boundedRunner = Effect.gen(function* () {
  const executor = yield* CommandExecutor.CommandExecutor
  return (limits: ChildLimits) => {
    // @effect/platform-node spawns every child detached (its own process group) and, when the scope
    // closes on a running child, sends SIGTERM to the group and waits without limit. This adds the
    // SIGKILL after the grace period, for the leader and for anything left in its group. pgBackRest's
    // async archiving worker calls setsid() (fork.c, forkDetach), so it is not in this group.
    const stopGroup = (child: CommandExecutor.Process) =>
      Effect.gen(function* () {
        yield* signalGroup(child.pid, "SIGTERM")
        // Finalizers are uninterruptible: the wait must be made interruptible for the timeout to cut it.
        yield* Effect.interruptible(child.exitCode).pipe(Effect.timeout(limits.killGrace), Effect.ignore)
        yield* signalGroup(child.pid, "SIGKILL")
        yield* Effect.ignore(child.exitCode)
      })

    // stdout, stderr and the exit code are awaited together: a child blocked on a full pipe never exits.
    return (
      command: Command.Command,
      tailBytes: number,
    ): Effect.Effect<ChildOutput, OutputTooLarge | PlatformError.PlatformError> =>
      Effect.gen(function* () {
        const child = yield* Effect.acquireRelease(executor.start(command), (child, exit) =>
          Exit.isSuccess(exit) ? Effect.void : stopGroup(child),
        )
        const stdout = new ByteCollector(limits.maxStdoutBytes)
        const stderr = new ByteTail(tailBytes)
        const [, , exitCode] = yield* Effect.all(
          [
            Stream.runForEach(child.stdout, (chunk) =>
              stdout.push(chunk) ? Effect.void : new OutputTooLarge({ limit: limits.maxStdoutBytes }),
            ),
            Stream.runForEach(child.stderr, (chunk) => Effect.sync(() => stderr.push(chunk))),
            child.exitCode.pipe(Effect.catchAll((error) => Effect.succeed(exitCodeOf(error)))),
          ],
          { concurrency: "unbounded" },
        )
        return { exitCode, stdout: stdout.bytes(), stderr }
      }).pipe(Effect.scoped)
  }
})
