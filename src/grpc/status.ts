import { Match } from "effect"
import { Status } from "nice-grpc-common"
import type { PluginError } from "../domain/errors.js"

/** A gRPC status as the plugin reports it. */
export interface GrpcStatus {
  readonly code: Status
  readonly message: string
}

/**
 * The one place where plugin errors become gRPC status codes. The instance manager turns any error
 * from WAL.Archive into a failed archive_command (PostgreSQL keeps the segment and retries), and
 * WAL.Restore's NOT_FOUND into "segment absent" (PostgreSQL switches to streaming or ends recovery),
 * so codes matter: a transient failure must never read as NOT_FOUND.
 */
export const grpcStatusOf = (error: PluginError): GrpcStatus => ({
  code: codeOf(error),
  message: bounded(error.message),
})

/**
 * The longest status message sent. A message quotes what was refused (a name, a path, pgBackRest's
 * output); a request can make that arbitrarily long, and a status trailer past about 64 KiB breaks a
 * Node.js client's connection instead of reporting the error.
 */
export const MAX_STATUS_MESSAGE = 4096

const bounded = (message: string): string =>
  message.length <= MAX_STATUS_MESSAGE
    ? message
    : `${message.slice(0, MAX_STATUS_MESSAGE - 64)}... (${message.length - (MAX_STATUS_MESSAGE - 64)} more characters)`

const codeOf = Match.type<PluginError>().pipe(
  Match.tagsExhaustive({
    InvalidRequest: () => Status.INVALID_ARGUMENT,
    NotFound: () => Status.NOT_FOUND,
    FailedPrecondition: () => Status.FAILED_PRECONDITION,
    Unavailable: () => Status.UNAVAILABLE,
    Unimplemented: () => Status.UNIMPLEMENTED,
    PermissionDenied: () => Status.PERMISSION_DENIED,
    PgBackRestTimeout: () => Status.DEADLINE_EXCEEDED,
    // A repository that could not be reached or answered 5xx, or a lock held (pgBackRest's codes 49,
    // 101, 66, 50, or exit 104 listing only those per repository) is UNAVAILABLE: retrying is the
    // answer. Any other exit is INTERNAL; callers that know better (archive-get's "not found") map to
    // a more precise error before reaching here.
    PgBackRestFailed: (error) => (error.reason === "transient" ? Status.UNAVAILABLE : Status.INTERNAL),
  }),
)
