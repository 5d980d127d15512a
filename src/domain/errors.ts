import { Schema } from "effect"
import { FailureReason } from "./pgbackrestFailure.js"

/**
 * Every failure the plugin can report. Each is a tagged error with structured fields; `message` is
 * what a user reads (in the gRPC status, in logs). None of them ever carries a secret value.
 * `src/grpc/status.ts` maps each to one gRPC status code.
 */

/** The request (or a resource it points at) is malformed: names the offending field. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  field: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `${this.field}: ${this.reason}`
  }
}

/** Something the request names does not exist (a WAL segment, a Stanza, a Secret key). */
export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  what: Schema.String,
  reason: Schema.optional(Schema.String),
}) {
  override get message(): string {
    return this.reason === undefined ? `${this.what} not found` : `${this.what} not found: ${this.reason}`
  }
}

/** The system is not in a state that allows the call (a backup already running, a stanza mismatch). */
export class FailedPrecondition extends Schema.TaggedError<FailedPrecondition>()("FailedPrecondition", {
  reason: Schema.String,
}) {
  override get message(): string {
    return this.reason
  }
}

/** A dependency is temporarily out of reach (Kubernetes API, object store): the caller may retry. */
export class Unavailable extends Schema.TaggedError<Unavailable>()("Unavailable", {
  what: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `${this.what} unavailable: ${this.reason}`
  }
}

/** The plugin's service account may not do what the call needs (Kubernetes RBAC said 403). */
export class PermissionDenied extends Schema.TaggedError<PermissionDenied>()("PermissionDenied", {
  action: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `not allowed to ${this.action}: ${this.reason}`
  }
}

/** The RPC exists in CNPG-I but this role does not serve it. */
export class Unimplemented extends Schema.TaggedError<Unimplemented>()("Unimplemented", {
  rpc: Schema.String,
}) {
  override get message(): string {
    return `${this.rpc} is not served by this role of the plugin`
  }
}

/** A pgBackRest command ended with a non-zero exit code. */
export class PgBackRestFailed extends Schema.TaggedError<PgBackRestFailed>()("PgBackRestFailed", {
  command: Schema.String,
  exitCode: Schema.Number,
  stderrTail: Schema.String,
  /** What the failure means, decided once where it was born (`classifyFailure`, in the runner). */
  reason: FailureReason,
}) {
  override get message(): string {
    const tail = this.stderrTail.trim()
    return `pgbackrest ${this.command} failed with exit code ${this.exitCode}${tail === "" ? "" : `: ${tail}`}`
  }
}

/** A pgBackRest command ran longer than its time limit and was killed (with its process group). */
export class PgBackRestTimeout extends Schema.TaggedError<PgBackRestTimeout>()("PgBackRestTimeout", {
  command: Schema.String,
  timeoutMs: Schema.Number,
}) {
  override get message(): string {
    return `pgbackrest ${this.command} did not finish within ${this.timeoutMs} ms and was stopped`
  }
}

/** Errors a CNPG-I handler may fail with; each one maps to a gRPC status. */
export type PluginError =
  | InvalidRequest
  | NotFound
  | FailedPrecondition
  | Unavailable
  | Unimplemented
  | PermissionDenied
  | PgBackRestFailed
  | PgBackRestTimeout

/** The unix socket is held by another live process: two sidecars must never share it. */
export class SocketInUse extends Schema.TaggedError<SocketInUse>()("SocketInUse", {
  path: Schema.String,
}) {
  override get message(): string {
    return `another process is serving on ${this.path}; refusing to start a second server on the same socket`
  }
}

/** The gRPC server could not start (bind failure, unreadable certificate). */
export class ServerStartFailed extends Schema.TaggedError<ServerStartFailed>()("ServerStartFailed", {
  address: Schema.String,
  reason: Schema.String,
}) {
  override get message(): string {
    return `cannot serve on ${this.address}: ${this.reason}`
  }
}

/** A client call to the plugin's socket failed (health check, CLI client). */
export class CallFailed extends Schema.TaggedError<CallFailed>()("CallFailed", {
  address: Schema.String,
  rpc: Schema.String,
  code: Schema.Number,
  reason: Schema.String,
}) {
  override get message(): string {
    return `${this.rpc} on ${this.address} failed: ${this.reason}`
  }
}
