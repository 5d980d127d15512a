import * as fs from "node:fs/promises"
import * as path from "node:path"
import * as tls from "node:tls"
import { NodeContext } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { ChannelCredentials, Client, Metadata } from "@grpc/grpc-js"
import { Duration, Effect, Either, Layer, Logger, Schedule } from "effect"
import { ClientError, createChannel, createClient, Status } from "nice-grpc"
import { PLUGIN_NAME } from "../../src/domain/plugin.js"
import { GetPluginMetadataResponse, IdentityDefinition } from "../../src/generated/identity.js"
import { implement } from "../../src/grpc/handlers.js"
import { Identity, ServedCapabilities } from "../../src/grpc/identity.js"
import { ipv4Fallback, MAX_RECEIVE_MESSAGE_BYTES, serveMutualTls } from "../../src/grpc/server.js"
import { issue, type KeyPair, makeCa, secretVolume } from "../support/certificates.js"
import { tempDir } from "../support/tempDir.js"

const POLL = Duration.millis(100)

const read = (file: string) => Effect.promise(() => fs.readFile(file))

/** GetPluginMetadata over a fresh channel (its own subchannel pool: no connection is reused). */
const getMetadata = (port: number, trust: string, client?: KeyPair, host = "127.0.0.1") =>
  Effect.gen(function* () {
    const ca = yield* read(trust)
    const key = client === undefined ? null : yield* read(client.key)
    const cert = client === undefined ? null : yield* read(client.cert)
    const channel = createChannel(`${host}:${port}`, ChannelCredentials.createSsl(ca, key, cert), {
      "grpc.use_local_subchannel_pool": 1,
      "grpc.ssl_target_name_override": "localhost",
    })
    return yield* Effect.tryPromise({
      try: () =>
        createClient(IdentityDefinition, channel).getPluginMetadata(
          {},
          { signal: AbortSignal.timeout(5000) },
        ),
      catch: (error) => (error instanceof ClientError ? error.code : Status.UNKNOWN),
    }).pipe(
      Effect.map((metadata) => metadata.name),
      Effect.either,
      Effect.ensuring(Effect.sync(() => channel.close())),
    )
  })

/** A raw TLS handshake with node:tls, so the protocol version can be forced. */
const handshake = (port: number, options: tls.ConnectionOptions) =>
  Effect.async<"connected" | string>((resume) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      servername: "localhost",
      ALPNProtocols: ["h2"],
      ...options,
    })
    socket.once("secureConnect", () => {
      socket.destroy()
      resume(Effect.succeed("connected"))
    })
    socket.once("error", (error: NodeJS.ErrnoException) => {
      socket.destroy()
      resume(Effect.succeed(error.code ?? error.message))
    })
    return Effect.sync(() => socket.destroy())
  })

const varint = (value: number): Buffer => {
  const bytes: Array<number> = []
  let rest = value
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80)
    rest = Math.floor(rest / 0x80)
  }
  bytes.push(rest)
  return Buffer.from(bytes)
}

/**
 * A GetPluginMetadataRequest of exactly `size` bytes: one unknown length-delimited field (number 1000),
 * which the decoder skips, so only its size can make the server refuse it.
 */
const requestOfSize = (size: number): Buffer => {
  const tag = varint((1000 << 3) | 2)
  let payload = size - tag.length - 1
  while (tag.length + varint(payload).length + payload > size) payload -= 1
  const request = Buffer.concat([tag, varint(payload), Buffer.alloc(payload, 0x61)])
  assert.strictEqual(request.length, size)
  return request
}

const GET_PLUGIN_METADATA = `/${IdentityDefinition.fullName}/${IdentityDefinition.methods.getPluginMetadata.name}`

/** GetPluginMetadata with raw request bytes over `client`: the plugin's name, or the gRPC refusal. */
const rawGetMetadata = (client: Client, request: Buffer) =>
  Effect.async<Either.Either<string, { readonly code: Status; readonly details: string }>>((resume) => {
    const call = client.makeUnaryRequest(
      GET_PLUGIN_METADATA,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      request,
      new Metadata(),
      { deadline: Date.now() + 30_000 },
      (error, response) =>
        resume(
          Effect.succeed(
            error
              ? Either.left({ code: error.code, details: error.details })
              : Either.right(GetPluginMetadataResponse.decode(response ?? Buffer.alloc(0)).name),
          ),
        ),
    )
    return Effect.sync(() => call.cancel())
  })

const identityLayer = Identity.Default.pipe(Layer.provide(Layer.succeed(ServedCapabilities, [])))

/**
 * A server on 127.0.0.1 with certificates made for the test: its CA, another CA for a stranger client,
 * and a next CA for the rotation. The watcher's warnings land in `warnings`.
 */
const setup = (warnings: Array<string> = [], address = "127.0.0.1:0") =>
  Effect.gen(function* () {
    const dir = yield* tempDir()
    const ca = yield* makeCa(dir, "ca")
    const otherCa = yield* makeCa(dir, "other-ca")
    const nextCa = yield* makeCa(dir, "next-ca")
    const certificates = {
      ca,
      otherCa,
      nextCa,
      server: yield* issue(dir, ca, "server", "server"),
      client: yield* issue(dir, ca, "client", "client"),
      stranger: yield* issue(dir, otherCa, "stranger", "client"),
      nextServer: yield* issue(dir, nextCa, "next-server", "server"),
    }
    const volumeDir = path.join(dir, "volume")
    yield* Effect.promise(() => fs.mkdir(volumeDir))
    const volume = secretVolume(volumeDir)
    yield* volume.publish({
      "tls.crt": certificates.server.cert,
      "tls.key": certificates.server.key,
      "ca.crt": ca.cert,
    })
    const identity = yield* Effect.provide(Identity, identityLayer)
    const runtime = yield* Effect.runtime<never>()
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") {
          warnings.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
        }
      }),
    )
    const port = yield* serveMutualTls(
      address,
      volume.files,
      [implement(IdentityDefinition, identity, runtime)],
      {
        certificatePollInterval: POLL,
      },
    ).pipe(Effect.provide(logger))
    return { port, volume, ...certificates }
  })

/** Repeats `check` until it holds; fails the test after 5 s (many polls of the watcher). */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  check.pipe(
    Effect.repeat({ until: (ok) => ok, schedule: Schedule.spaced(POLL) }),
    Effect.timeout("5 seconds"),
  )

describe("the operator-facing server (mutual TLS)", () => {
  it.scopedLive("answers a client with a certificate from the client CA", () =>
    Effect.gen(function* () {
      const { port, ca, client } = yield* setup()
      assert.deepStrictEqual(yield* getMetadata(port, ca.cert, client), Either.right(PLUGIN_NAME))
      assert.strictEqual(
        yield* handshake(port, {
          ca: yield* read(ca.cert),
          key: yield* read(client.key),
          cert: yield* read(client.cert),
        }),
        "connected",
      )
    }).pipe(Effect.provide(NodeContext.layer)),
  )

  it.scopedLive("[::] serves IPv6 and IPv4 clients alike (an IPv6-only cluster reaches it)", () =>
    Effect.gen(function* () {
      const { port, ca, client } = yield* setup([], "[::]:0")
      assert.deepStrictEqual(yield* getMetadata(port, ca.cert, client, "[::1]"), Either.right(PLUGIN_NAME))
      assert.deepStrictEqual(
        yield* getMetadata(port, ca.cert, client, "127.0.0.1"),
        Either.right(PLUGIN_NAME),
      )
      assert.strictEqual(ipv4Fallback("[::]:9090"), "0.0.0.0:9090")
      assert.isUndefined(ipv4Fallback("127.0.0.1:9090"))
      assert.isUndefined(ipv4Fallback("[::1]:9090"))
    }).pipe(Effect.provide(NodeContext.layer)),
  )

  it.scopedLive("refuses no client certificate, one from another CA, and TLS 1.2", () =>
    Effect.gen(function* () {
      const { port, ca, client, stranger } = yield* setup()
      assert.deepStrictEqual(yield* getMetadata(port, ca.cert), Either.left(Status.UNAVAILABLE))
      assert.deepStrictEqual(yield* getMetadata(port, ca.cert, stranger), Either.left(Status.UNAVAILABLE))
      const tls12 = yield* handshake(port, {
        ca: yield* read(ca.cert),
        key: yield* read(client.key),
        cert: yield* read(client.cert),
        maxVersion: "TLSv1.2",
      })
      assert.notStrictEqual(tls12, "connected")
      assert.match(tls12, /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/)
    }).pipe(Effect.provide(NodeContext.layer)),
  )

  it.scopedLive(
    "refuses a request larger than the limit with RESOURCE_EXHAUSTED and goes on serving",
    () =>
      Effect.gen(function* () {
        const { port, ca, client } = yield* setup()
        // One client, one connection: the refusal must not take the connection or the server down.
        const raw = yield* Effect.acquireRelease(
          Effect.gen(function* () {
            const credentials = ChannelCredentials.createSsl(
              yield* read(ca.cert),
              yield* read(client.key),
              yield* read(client.cert),
            )
            return new Client(`127.0.0.1:${port}`, credentials, {
              "grpc.use_local_subchannel_pool": 1,
              "grpc.ssl_target_name_override": "localhost",
            })
          }),
          (raw) => Effect.sync(() => raw.close()),
        )
        // Above grpc-js's implicit 4 MiB: the explicit limit is the one in force, and it admits itself.
        assert.isAbove(MAX_RECEIVE_MESSAGE_BYTES, 4 * 1024 * 1024)
        assert.deepStrictEqual(
          yield* rawGetMetadata(raw, requestOfSize(MAX_RECEIVE_MESSAGE_BYTES)),
          Either.right(PLUGIN_NAME),
        )
        const refused = yield* rawGetMetadata(raw, requestOfSize(MAX_RECEIVE_MESSAGE_BYTES + 1))
        if (Either.isRight(refused)) {
          return assert.fail(`a request of ${MAX_RECEIVE_MESSAGE_BYTES + 1} bytes was served`)
        }
        assert.strictEqual(refused.left.code, Status.RESOURCE_EXHAUSTED, refused.left.details)
        assert.match(refused.left.details, /larger than max/)
        assert.deepStrictEqual(yield* rawGetMetadata(raw, Buffer.alloc(0)), Either.right(PLUGIN_NAME))
        assert.deepStrictEqual(yield* getMetadata(port, ca.cert, client), Either.right(PLUGIN_NAME))
      }).pipe(Effect.provide(NodeContext.layer)),
    60_000,
  )

  it.scopedLive(
    "serves renewed certificates without a restart, and keeps the old ones when the new are bad",
    () =>
      Effect.gen(function* () {
        const warnings: Array<string> = []
        const { port, volume, ca, nextCa, client, server, nextServer } = yield* setup(warnings)
        assert.deepStrictEqual(yield* getMetadata(port, ca.cert, client), Either.right(PLUGIN_NAME))

        // A certificate with a key that is not its own: unusable, the server keeps the current pair.
        yield* volume.publish({ "tls.crt": nextServer.cert, "tls.key": server.key, "ca.crt": ca.cert })
        yield* Effect.sleep(Duration.times(POLL, 5))
        assert.deepStrictEqual(yield* getMetadata(port, ca.cert, client), Either.right(PLUGIN_NAME))
        assert.strictEqual(warnings.length, 1, warnings.join("\n"))
        assert.include(warnings[0], "keeping the current TLS certificates")

        yield* volume.publish({ "tls.crt": nextServer.cert, "tls.key": nextServer.key, "ca.crt": ca.cert })
        yield* eventually(getMetadata(port, nextCa.cert, client).pipe(Effect.map(Either.isRight)))
        assert.deepStrictEqual(yield* getMetadata(port, nextCa.cert, client), Either.right(PLUGIN_NAME))
        assert.deepStrictEqual(yield* getMetadata(port, ca.cert, client), Either.left(Status.UNAVAILABLE))
      }).pipe(Effect.provide(NodeContext.layer)),
  )
})
