import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { type CliCommand, parseCommandLine } from "../../src/cli/args.js"

const parsed = (argv: ReadonlyArray<string>): CliCommand => {
  const result = parseCommandLine(argv)
  if (Either.isLeft(result)) {
    assert.fail(`expected ${argv.join(" ")} to parse, got: ${result.left.message}`)
  }
  return result.right
}

const rejected = (argv: ReadonlyArray<string>): string => {
  const result = parseCommandLine(argv)
  if (Either.isRight(result)) {
    assert.fail(`expected ${argv.join(" ")} to be rejected, got ${JSON.stringify(result.right)}`)
  }
  return result.left.message
}

describe("parseCommandLine", () => {
  it("gives the socket roles CloudNativePG's defaults", () => {
    assert.deepStrictEqual(parsed(["instance"]), {
      _tag: "Instance",
      logLevel: "info",
      pluginPath: "/plugins",
    })
    assert.deepStrictEqual(parsed(["restore"]), { _tag: "Restore", logLevel: "info", pluginPath: "/plugins" })
    assert.deepStrictEqual(parsed(["healthcheck"]), {
      _tag: "Healthcheck",
      logLevel: "info",
      pluginPath: "/plugins",
    })
  })

  it("reads --plugin-path and --log-level in both spellings", () => {
    assert.deepStrictEqual(parsed(["instance", "--plugin-path", "/tmp/p", "--log-level", "debug"]), {
      _tag: "Instance",
      logLevel: "debug",
      pluginPath: "/tmp/p",
    })
    assert.deepStrictEqual(parsed(["healthcheck", "--plugin-path=/x", "--log-level=warning"]), {
      _tag: "Healthcheck",
      logLevel: "warning",
      pluginPath: "/x",
    })
  })

  it("requires the operator's certificates and defaults its address", () => {
    const command = parsed([
      "operator",
      "--server-cert",
      "/certs/tls.crt",
      "--server-key",
      "/certs/tls.key",
      "--client-cert",
      "/client/ca.crt",
    ])
    assert.deepStrictEqual(command, {
      _tag: "Operator",
      logLevel: "info",
      pluginPath: "/plugins",
      serverAddress: "[::]:9090",
      serverCert: "/certs/tls.crt",
      serverKey: "/certs/tls.key",
      clientCert: "/client/ca.crt",
    })
    assert.include(
      rejected(["operator", "--server-cert", "a", "--server-key", "b"]),
      "--client-cert is required",
    )
    assert.include(rejected(["operator"]), "--server-cert is required")
  })

  it("rejects unknown roles, unknown flags, stray arguments and bad values, naming them", () => {
    assert.include(rejected([]), "a role is required")
    assert.include(rejected(["backup"]), 'unknown role "backup"')
    assert.include(rejected(["instance", "--server-cert", "x"]), "--server-cert")
    assert.include(rejected(["instance", "--nope"]), "--nope")
    assert.include(rejected(["instance", "extra"]), "extra")
    assert.include(rejected(["instance", "--log-level", "loud"]), "--log-level must be one of")
    assert.include(rejected(["instance", "--plugin-path", ""]), "--plugin-path must not be empty")
    assert.include(rejected(["instance", "--plugin-path"]), "--plugin-path")
  })

  it("parses the client calls", () => {
    assert.deepStrictEqual(
      parsed(["client", "wal-archive", "--cluster", "c.yaml", "pg_wal/000000010000000000000001"]),
      {
        _tag: "Client",
        rpc: "wal-archive",
        logLevel: "info",
        pluginPath: "/plugins",
        clusterFile: "c.yaml",
        walPath: "pg_wal/000000010000000000000001",
      },
    )
    assert.deepStrictEqual(
      parsed([
        "client",
        "backup",
        "--cluster",
        "c.yaml",
        "--parameter",
        "selectedRepository=2",
        "--parameter",
        "backupType=incr",
      ]),
      {
        _tag: "Client",
        rpc: "backup",
        logLevel: "info",
        pluginPath: "/plugins",
        clusterFile: "c.yaml",
        parameters: { selectedRepository: "2", backupType: "incr" },
      },
    )
    assert.deepStrictEqual(
      parsed([
        "client",
        "wal-restore",
        "--cluster",
        "c.yaml",
        "000000010000000000000002",
        "pg_wal/RECOVERYXLOG",
      ]),
      {
        _tag: "Client",
        rpc: "wal-restore",
        logLevel: "info",
        pluginPath: "/plugins",
        clusterFile: "c.yaml",
        walName: "000000010000000000000002",
        destination: "pg_wal/RECOVERYXLOG",
      },
    )
    assert.deepStrictEqual(parsed(["client", "restore", "--cluster", "r.yaml"]), {
      _tag: "Client",
      rpc: "restore",
      logLevel: "info",
      pluginPath: "/plugins",
      clusterFile: "r.yaml",
    })
    assert.include(
      rejected(["client", "wal-restore", "--cluster", "c", "000000010000000000000002"]),
      "a WAL name and a destination",
    )
    assert.include(rejected(["client", "restore", "--cluster", "c", "extra"]), "unexpected argument")
    assert.include(rejected(["client"]), "an RPC is required")
    assert.include(rejected(["client", "restore-all"]), 'unknown RPC "restore-all"')
    assert.include(rejected(["client", "wal-archive", "x"]), "--cluster is required")
    assert.include(rejected(["client", "wal-archive", "--cluster", "c", "a", "b"]), "exactly one WAL path")
    assert.include(rejected(["client", "backup", "--cluster", "c", "--parameter", "nokey"]), "KEY=VALUE")
    assert.include(
      rejected(["client", "backup", "--cluster", "c", "--backup", "b.yaml", "--backup-name", "n"]),
      "not both",
    )
    assert.include(
      rejected(["client", "wal-archive", "--cluster", "c", "--backup-name", "n", "w"]),
      "for client backup",
    )
  })

  it("knows help and version", () => {
    assert.strictEqual(parsed(["--help"])._tag, "Help")
    assert.strictEqual(parsed(["-h"])._tag, "Help")
    assert.strictEqual(parsed(["--version"])._tag, "Version")
  })
})
