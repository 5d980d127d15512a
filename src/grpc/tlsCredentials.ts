import * as crypto from "node:crypto"
import { createSecureContext, type SecureContextOptions } from "node:tls"
import { FileSystem } from "@effect/platform"
import { ServerCredentials } from "@grpc/grpc-js"
import { Duration, Effect, Either, Ref, Schedule, type Scope } from "effect"

/** PEM contents of the operator-facing server: its certificate and key, and the CA of allowed clients. */
export interface MutualTlsMaterial {
  readonly cert: Buffer
  readonly key: Buffer
  readonly clientCa: Buffer
}

/** Where the PEM files are (the mounted server and client Secrets). */
export interface CertificateFiles {
  readonly serverCert: string
  readonly serverKey: string
  readonly clientCa: string
}

const contextOf = (material: MutualTlsMaterial): SecureContextOptions => ({
  cert: material.cert,
  key: material.key,
  ca: material.clientCa,
  minVersion: "TLSv1.3",
})

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * Whether the material makes a usable server context: PEM that parses, a key that belongs to the
 * certificate, a CA certificate. Checked before a rotation because grpc-js, handed a context it
 * cannot apply, drops every new connection until the next good one.
 */
export const checkMaterial = (material: MutualTlsMaterial): Either.Either<void, string> =>
  Either.try({
    try: () => {
      const certificate = new crypto.X509Certificate(material.cert)
      if (!certificate.checkPrivateKey(crypto.createPrivateKey(material.key))) {
        throw new Error("the private key does not belong to the server certificate")
      }
      new crypto.X509Certificate(material.clientCa)
      createSecureContext(contextOf(material))
    },
    catch: messageOf,
  })

/**
 * Server credentials for the connection CloudNativePG opens to the operator-side plugin: TLS 1.3 at
 * least (grpc-js's createSsl cannot say so), a client certificate required and verified against the
 * client CA. `rotate` swaps the certificates of the running server, for cert-manager renewals.
 */
export class MutualTlsCredentials extends ServerCredentials {
  constructor(material: MutualTlsMaterial) {
    super({ requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, contextOf(material))
  }

  /** New connections use `material`; open ones keep theirs. Refused (and nothing changes) when unusable. */
  rotate(material: MutualTlsMaterial): Either.Either<void, string> {
    return checkMaterial(material).pipe(
      Either.map(() => this.updateSecureContextOptions(contextOf(material))),
    )
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this
  }
}

/** Reads the three PEM files. */
export const readCertificates = (
  files: CertificateFiles,
): Effect.Effect<MutualTlsMaterial, string, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const read = (file: string) =>
      fs.readFile(file).pipe(
        Effect.map((bytes) => Buffer.from(bytes)),
        Effect.mapError((error) => `cannot read ${file}: ${error.message}`),
      )
    const [cert, key, clientCa] = yield* Effect.all([
      read(files.serverCert),
      read(files.serverKey),
      read(files.clientCa),
    ])
    return { cert, key, clientCa }
  })

const digestOf = (material: MutualTlsMaterial): string =>
  crypto
    .createHash("sha256")
    .update(material.cert)
    .update("\0")
    .update(material.key)
    .update("\0")
    .update(material.clientCa)
    .digest("hex")

/**
 * How often the PEM files are compared with what the server uses. cert-manager renews long before
 * expiry and the kubelet takes up to a minute to update a Secret volume: seconds are plenty.
 */
export const CERTIFICATE_POLL_INTERVAL = Duration.seconds(5)

/**
 * Keeps the running server's certificates in step with the files, for the lifetime of the scope. The
 * kubelet updates a Secret volume by swapping a symlink (`..data`), which fs.watch on the files never
 * reports: the files' content is polled instead. A new set that cannot be read or used (a half-written
 * file, a key that does not match) keeps the old certificates and logs a warning, once per problem.
 */
export const watchCertificates = (
  files: CertificateFiles,
  credentials: MutualTlsCredentials,
  current: MutualTlsMaterial,
  interval: Duration.DurationInput = CERTIFICATE_POLL_INTERVAL,
): Effect.Effect<void, never, Scope.Scope | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const served = yield* Ref.make(digestOf(current))
    const lastProblem = yield* Ref.make<string | undefined>(undefined)
    const warnOnce = (problem: string) =>
      Effect.gen(function* () {
        if ((yield* Ref.getAndSet(lastProblem, problem)) !== problem) {
          yield* Effect.logWarning(`keeping the current TLS certificates: ${problem}`)
        }
      })
    const poll = Effect.gen(function* () {
      const material = yield* readCertificates(files)
      const digest = digestOf(material)
      if (digest === (yield* Ref.get(served))) {
        return
      }
      const rotated = credentials.rotate(material)
      if (Either.isLeft(rotated)) {
        return yield* Effect.fail(`the new certificates are not usable: ${rotated.left}`)
      }
      yield* Ref.set(served, digest)
      yield* Ref.set(lastProblem, undefined)
      const certificate = new crypto.X509Certificate(material.cert)
      yield* Effect.logInfo("TLS certificates rotated").pipe(
        Effect.annotateLogs({ subject: certificate.subject, validTo: certificate.validTo }),
      )
    }).pipe(Effect.catchAll(warnOnce))
    yield* poll.pipe(
      Effect.repeat(Schedule.spaced(interval)),
      Effect.annotateLogs({ files: [files.serverCert, files.serverKey, files.clientCa] }),
      Effect.forkScoped,
    )
  })
