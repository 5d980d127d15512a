// Wire-compatibility tests for the generated CNPG-I code (src/generated, from proto/).
//
// The expected field numbers, wire types, packages and enum values below are written by hand from the
// cnpg-i v0.6.0 protocol, independently of the generated code: bytes are built with a raw BinaryWriter
// and decoded with the generated codecs, and the generated encoders' output is read back tag by tag with
// a raw BinaryReader. A renumbered field, a wrong package or a renamed RPC fails here.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BinaryReader, BinaryWriter, WireType } from "@bufbuild/protobuf/wire"
import { assert, describe, it } from "@effect/vitest"
import * as grpc from "@grpc/grpc-js"
import { createServer, type TsProtoServiceDefinition } from "nice-grpc"
import {
  BackupCapability,
  BackupCapability_RPC_Type,
  BackupDefinition,
  BackupRequest,
  BackupResult,
} from "../../src/generated/backup.js"
import {
  GetPluginCapabilitiesResponse,
  GetPluginMetadataResponse,
  IdentityDefinition,
  PluginCapability_Service_Type,
  ProbeResponse,
} from "../../src/generated/identity.js"
import {
  CollectMetric,
  Metric,
  MetricsCapability,
  MetricsCapability_RPC_Type,
  MetricsDefinition,
  MetricType_Type,
} from "../../src/generated/metrics.js"
import {
  OperatorCapability,
  OperatorCapability_RPC_Type,
  OperatorDefinition,
  SetStatusInClusterRequest,
  SetStatusInClusterResponse,
  ValidationError,
} from "../../src/generated/operator.js"
import {
  OperatorLifecycleCapabilitiesResponse,
  OperatorLifecycleDefinition,
  OperatorLifecycleRequest,
  OperatorLifecycleResponse,
  OperatorOperationType_Type,
} from "../../src/generated/operator_lifecycle.js"
import {
  EnrichConfigurationRequest,
  OperationType_Type,
  PostgresCapability,
  PostgresCapability_RPC_Type,
  PostgresDefinition,
} from "../../src/generated/postgres.js"
import {
  ReconcilerHooksCapability,
  ReconcilerHooksCapability_Kind,
  ReconcilerHooksDefinition,
  ReconcilerHooksRequest,
  ReconcilerHooksResult,
  ReconcilerHooksResult_Behavior,
} from "../../src/generated/reconciler.js"
import {
  RestoreJobHooksCapability,
  RestoreJobHooksCapability_Kind,
  RestoreJobHooksDefinition,
  RestoreRequest,
  RestoreResponse,
} from "../../src/generated/restore_job.js"
import {
  WALArchiveRequest,
  WALCapability,
  WALCapability_RPC_Type,
  WALDefinition,
  WALRestoreRequest,
  WALRestoreRequest_Mode,
  WALStatusResult,
} from "../../src/generated/wal.js"

// ---------------------------------------------------------------------------------------------------------
// Raw wire helpers (no generated code involved)

const LEN = WireType.LengthDelimited
const VARINT = WireType.Varint
const utf8 = new TextEncoder()
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

type Field =
  | { readonly no: number; readonly wire: WireType.Varint; readonly value: bigint }
  | { readonly no: number; readonly wire: WireType.LengthDelimited; readonly value: Uint8Array }
  | { readonly no: number; readonly wire: WireType.Bit64; readonly value: number }

/** Splits an encoded message into its top-level fields, in wire order. */
const scan = (bytes: Uint8Array): ReadonlyArray<Field> => {
  const reader = new BinaryReader(bytes)
  const fields: Array<Field> = []
  while (reader.pos < reader.len) {
    const [no, wire] = reader.tag()
    switch (wire) {
      case WireType.Varint:
        fields.push({ no, wire, value: BigInt(reader.uint64()) })
        break
      case WireType.LengthDelimited:
        fields.push({ no, wire, value: reader.bytes() })
        break
      case WireType.Bit64:
        fields.push({ no, wire, value: reader.double() })
        break
      default:
        throw new Error(`unexpected wire type ${wire} for field ${no}`)
    }
  }
  return fields
}

const numbers = (fields: ReadonlyArray<Field>): ReadonlyArray<number> => fields.map((f) => f.no)

const all = (fields: ReadonlyArray<Field>, no: number): ReadonlyArray<Field> =>
  fields.filter((f) => f.no === no)

const single = (fields: ReadonlyArray<Field>, no: number): Field => {
  const hits = all(fields, no)
  assert.lengthOf(hits, 1, `field ${no} must occur exactly once`)
  const [hit] = hits
  if (hit === undefined) throw new Error(`field ${no} missing`)
  return hit
}

const varintAt = (fields: ReadonlyArray<Field>, no: number): bigint => {
  const f = single(fields, no)
  if (f.wire !== WireType.Varint) throw new Error(`field ${no} is not a varint (wire type ${f.wire})`)
  return f.value
}

const bytesOf = (f: Field): Uint8Array => {
  if (f.wire !== WireType.LengthDelimited) throw new Error(`field ${f.no} is not length-delimited`)
  return f.value
}

const bytesAt = (fields: ReadonlyArray<Field>, no: number): Uint8Array => bytesOf(single(fields, no))
const stringAt = (fields: ReadonlyArray<Field>, no: number): string => text(bytesAt(fields, no))
const messageAt = (fields: ReadonlyArray<Field>, no: number): ReadonlyArray<Field> =>
  scan(bytesAt(fields, no))
const stringsAt = (fields: ReadonlyArray<Field>, no: number): ReadonlyArray<string> =>
  all(fields, no).map((f) => text(bytesOf(f)))

const doubleAt = (fields: ReadonlyArray<Field>, no: number): number => {
  const f = single(fields, no)
  if (f.wire !== WireType.Bit64) throw new Error(`field ${no} is not 64-bit (wire type ${f.wire})`)
  return f.value
}

/** A map<string,string> field: repeated entry messages with key = 1, value = 2. */
const mapAt = (fields: ReadonlyArray<Field>, no: number): Record<string, string> =>
  Object.fromEntries(
    all(fields, no).map((entry) => {
      const kv = scan(bytesOf(entry))
      assert.deepStrictEqual(numbers(kv), [1, 2])
      return [stringAt(kv, 1), stringAt(kv, 2)]
    }),
  )

const writeString = (w: BinaryWriter, no: number, value: string): BinaryWriter => w.tag(no, LEN).string(value)
const writeBytes = (w: BinaryWriter, no: number, value: string): BinaryWriter =>
  w.tag(no, LEN).bytes(utf8.encode(value))
const writeMap = (w: BinaryWriter, no: number, entries: Record<string, string>): BinaryWriter => {
  for (const [key, value] of Object.entries(entries)) {
    w.tag(no, LEN).fork().tag(1, LEN).string(key).tag(2, LEN).string(value).join()
  }
  return w
}
/** A nested message whose only field is an enum/varint at field 1 (the `{ Type type = 1; }` pattern). */
const writeTypeMessage = (w: BinaryWriter, no: number, type: number): BinaryWriter =>
  w.tag(no, LEN).fork().tag(1, VARINT).int32(type).join()

const CLUSTER = '{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"pg"}}'

/** Numeric enum entries, without TypeScript's reverse mapping and ts-proto's UNRECOGNIZED. */
const enumEntries = (e: Record<string, string | number>): Record<string, number> =>
  Object.fromEntries(
    Object.entries(e).filter(
      (entry): entry is [string, number] => typeof entry[1] === "number" && entry[0] !== "UNRECOGNIZED",
    ),
  )

// ---------------------------------------------------------------------------------------------------------
// Services and gRPC paths

/** The gRPC path nice-grpc serves a ts-proto method on. */
const pathOf = <D extends TsProtoServiceDefinition>(def: D, method: keyof D["methods"] & string): string => {
  const m = def.methods[method]
  if (m === undefined) throw new Error(`no method ${method} in ${def.fullName}`)
  return `/${def.fullName}/${m.name}`
}

interface ServiceCase {
  readonly def: TsProtoServiceDefinition
  readonly paths: Readonly<Record<string, string>>
}
// Mapped over the generated method keys so that a missing or extra RPC does not compile.
const service = <D extends TsProtoServiceDefinition>(
  def: D,
  paths: { readonly [K in keyof D["methods"] & string]: string },
): ServiceCase => ({ def, paths })

const SERVICES: ReadonlyArray<ServiceCase> = [
  service(IdentityDefinition, {
    getPluginMetadata: "/cnpgi.identity.v1.Identity/GetPluginMetadata",
    getPluginCapabilities: "/cnpgi.identity.v1.Identity/GetPluginCapabilities",
    probe: "/cnpgi.identity.v1.Identity/Probe",
  }),
  service(OperatorLifecycleDefinition, {
    getCapabilities: "/cnpgi.operator_lifecycle.v1.OperatorLifecycle/GetCapabilities",
    lifecycleHook: "/cnpgi.operator_lifecycle.v1.OperatorLifecycle/LifecycleHook",
  }),
  service(OperatorDefinition, {
    getCapabilities: "/cnpgi.operator.v1.Operator/GetCapabilities",
    validateClusterCreate: "/cnpgi.operator.v1.Operator/ValidateClusterCreate",
    validateClusterChange: "/cnpgi.operator.v1.Operator/ValidateClusterChange",
    mutateCluster: "/cnpgi.operator.v1.Operator/MutateCluster",
    setStatusInCluster: "/cnpgi.operator.v1.Operator/SetStatusInCluster",
    deregister: "/cnpgi.operator.v1.Operator/Deregister",
  }),
  service(WALDefinition, {
    getCapabilities: "/cnpgi.wal.v1.WAL/GetCapabilities",
    archive: "/cnpgi.wal.v1.WAL/Archive",
    restore: "/cnpgi.wal.v1.WAL/Restore",
    status: "/cnpgi.wal.v1.WAL/Status",
    setFirstRequired: "/cnpgi.wal.v1.WAL/SetFirstRequired",
  }),
  service(BackupDefinition, {
    getCapabilities: "/cnpgi.backup.v1.Backup/GetCapabilities",
    backup: "/cnpgi.backup.v1.Backup/Backup",
  }),
  service(RestoreJobHooksDefinition, {
    getCapabilities: "/cnpgi.wal.v1.RestoreJobHooks/GetCapabilities",
    restore: "/cnpgi.wal.v1.RestoreJobHooks/Restore",
  }),
  service(ReconcilerHooksDefinition, {
    getCapabilities: "/cnpgi.reconciler.v1.ReconcilerHooks/GetCapabilities",
    pre: "/cnpgi.reconciler.v1.ReconcilerHooks/Pre",
    post: "/cnpgi.reconciler.v1.ReconcilerHooks/Post",
  }),
  service(MetricsDefinition, {
    getCapabilities: "/cnpgi.metrics.v1.Metrics/GetCapabilities",
    define: "/cnpgi.metrics.v1.Metrics/Define",
    collect: "/cnpgi.metrics.v1.Metrics/Collect",
  }),
  service(PostgresDefinition, {
    getCapabilities: "/cnpgi.identity.v1.Postgres/GetCapabilities",
    enrichConfiguration: "/cnpgi.identity.v1.Postgres/EnrichConfiguration",
  }),
]

describe("gRPC services", () => {
  it("key paths", () => {
    assert.strictEqual(pathOf(WALDefinition, "archive"), "/cnpgi.wal.v1.WAL/Archive")
    assert.strictEqual(pathOf(WALDefinition, "restore"), "/cnpgi.wal.v1.WAL/Restore")
    assert.strictEqual(pathOf(RestoreJobHooksDefinition, "restore"), "/cnpgi.wal.v1.RestoreJobHooks/Restore")
    assert.strictEqual(
      pathOf(IdentityDefinition, "getPluginMetadata"),
      "/cnpgi.identity.v1.Identity/GetPluginMetadata",
    )
    assert.strictEqual(
      pathOf(PostgresDefinition, "enrichConfiguration"),
      "/cnpgi.identity.v1.Postgres/EnrichConfiguration",
    )
    assert.strictEqual(PostgresDefinition.fullName, "cnpgi.identity.v1.Postgres")
    assert.strictEqual(RestoreJobHooksDefinition.fullName, "cnpgi.wal.v1.RestoreJobHooks")
  })

  it("every service exposes exactly the upstream RPCs, unary, on the upstream paths", () => {
    assert.lengthOf(SERVICES, 9)
    for (const { def, paths } of SERVICES) {
      assert.deepStrictEqual(Object.keys(def.methods).sort(), Object.keys(paths).sort(), def.fullName)
      for (const [key, path] of Object.entries(paths)) {
        assert.strictEqual(pathOf(def, key), path)
        const method = def.methods[key]
        assert.isDefined(method)
        assert.isFalse(method?.requestStream, path)
        assert.isFalse(method?.responseStream, path)
      }
    }
  })

  // Proves the literal paths reach the right handlers through nice-grpc's real server, called by a raw
  // grpc-js client that knows nothing about the generated definitions.
  it("nice-grpc serves every RPC on its literal path", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cnpgi-wire-"))
    const address = `unix://${join(dir, "plugin.sock")}`
    const served: Array<string> = []
    const server = createServer()
    for (const { def } of SERVICES) {
      const impl = Object.fromEntries(
        Object.entries(def.methods).map(([key, method]) => [
          key,
          async () => {
            served.push(`${def.fullName}#${key}`)
            return method.responseType.decode(new Uint8Array(0))
          },
        ]),
      )
      // The definitions are handled generically here, so the per-service implementation type cannot be named.
      server.add(def, impl as never)
    }
    await server.listen(address)
    const client = new grpc.Client(address, grpc.credentials.createInsecure())
    try {
      for (const { def, paths } of SERVICES) {
        for (const [key, path] of Object.entries(paths)) {
          await new Promise<void>((resolve, reject) => {
            client.makeUnaryRequest(
              path,
              (request: Uint8Array) => Buffer.from(request),
              (response: Buffer) => response,
              new Uint8Array(0),
              (error) => (error ? reject(error) : resolve()),
            )
          })
          assert.strictEqual(served.at(-1), `${def.fullName}#${key}`, path)
        }
      }
      assert.lengthOf(served, 28)
    } finally {
      client.close()
      await server.shutdown()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

// ---------------------------------------------------------------------------------------------------------
// Enums

describe("enum values", () => {
  it("key values", () => {
    assert.strictEqual(PluginCapability_Service_Type.TYPE_METRICS, 10)
    assert.strictEqual(OperatorOperationType_Type.TYPE_EVALUATE, 6)
    assert.strictEqual(WALRestoreRequest_Mode.MODE_REWIND, 2)
    assert.strictEqual(ReconcilerHooksResult_Behavior.BEHAVIOR_TERMINATE, 3)
  })

  it("every enum matches upstream exactly", () => {
    const cases: ReadonlyArray<readonly [Record<string, string | number>, Record<string, number>]> = [
      [
        PluginCapability_Service_Type,
        {
          TYPE_UNSPECIFIED: 0,
          TYPE_OPERATOR_SERVICE: 1,
          TYPE_WAL_SERVICE: 2,
          TYPE_BACKUP_SERVICE: 3,
          TYPE_LIFECYCLE_SERVICE: 4,
          TYPE_RECONCILER_HOOKS: 5,
          TYPE_RESTORE_JOB: 6,
          TYPE_POSTGRES: 7,
          TYPE_INSTANCE_SIDECAR_INJECTION: 8,
          TYPE_INSTANCE_JOB_SIDECAR_INJECTION: 9,
          TYPE_METRICS: 10,
        },
      ],
      [
        OperatorOperationType_Type,
        {
          TYPE_UNSPECIFIED: 0,
          TYPE_PATCH: 1,
          TYPE_UPDATE: 2,
          TYPE_CREATE: 3,
          TYPE_DELETE: 4,
          TYPE_DEREGISTER: 5,
          TYPE_EVALUATE: 6,
        },
      ],
      [
        OperatorCapability_RPC_Type,
        {
          TYPE_UNSPECIFIED: 0,
          TYPE_VALIDATE_CLUSTER_CREATE: 1,
          TYPE_VALIDATE_CLUSTER_CHANGE: 2,
          TYPE_MUTATE_CLUSTER: 3,
          TYPE_SET_STATUS_IN_CLUSTER: 5,
          TYPE_DEREGISTER: 6,
        },
      ],
      [
        WALCapability_RPC_Type,
        {
          TYPE_UNSPECIFIED: 0,
          TYPE_ARCHIVE_WAL: 1,
          TYPE_RESTORE_WAL: 2,
          TYPE_STATUS: 3,
          TYPE_SET_FIRST_REQUIRED: 4,
        },
      ],
      [WALRestoreRequest_Mode, { MODE_UNSPECIFIED: 0, MODE_RECOVERY: 1, MODE_REWIND: 2 }],
      [BackupCapability_RPC_Type, { TYPE_UNSPECIFIED: 0, TYPE_BACKUP: 1 }],
      [RestoreJobHooksCapability_Kind, { KIND_UNSPECIFIED: 0, KIND_RESTORE: 1 }],
      [ReconcilerHooksCapability_Kind, { KIND_UNSPECIFIED: 0, KIND_CLUSTER: 1, KIND_BACKUP: 2 }],
      [
        ReconcilerHooksResult_Behavior,
        { BEHAVIOR_UNSPECIFIED: 0, BEHAVIOR_CONTINUE: 1, BEHAVIOR_REQUEUE: 2, BEHAVIOR_TERMINATE: 3 },
      ],
      [MetricType_Type, { TYPE_UNSPECIFIED: 0, TYPE_COUNTER: 1, TYPE_GAUGE: 2, TYPE_UNTYPED: 3 }],
      [MetricsCapability_RPC_Type, { TYPE_UNSPECIFIED: 0, TYPE_METRICS: 1 }],
      [PostgresCapability_RPC_Type, { TYPE_UNSPECIFIED: 0, TYPE_ENRICH_CONFIGURATION: 1 }],
      [
        OperationType_Type,
        { TYPE_UNSPECIFIED: 0, TYPE_INIT: 1, TYPE_RESTORE: 2, TYPE_RECONCILE: 3, TYPE_UPGRADE: 4 },
      ],
    ]
    for (const [actual, expected] of cases) {
      assert.deepStrictEqual(enumEntries(actual), expected)
    }
  })
})

// ---------------------------------------------------------------------------------------------------------
// Identity (cnpgi.identity.v1)

describe("identity", () => {
  const metadataStrings = [
    [1, "pgbackrest.dalibo.com"],
    [2, "0.1.0"],
    [3, "pgBackRest"],
    [4, "Backups with pgBackRest"],
    [5, "https://example.org/project"],
    [6, "https://example.org/repo"],
    [7, "Apache-2.0"],
    [8, "https://www.apache.org/licenses/LICENSE-2.0"],
    [9, "alpha"],
    [10, "Dalibo"],
  ] as const

  it("GetPluginMetadataResponse decodes hand-built bytes (fields 1-11)", () => {
    const w = new BinaryWriter()
    for (const [no, value] of metadataStrings) writeString(w, no, value)
    writeMap(w, 11, { a: "1", b: "2" })
    const m = GetPluginMetadataResponse.decode(w.finish())
    assert.deepStrictEqual(
      [
        m.name,
        m.version,
        m.displayName,
        m.description,
        m.projectUrl,
        m.repositoryUrl,
        m.license,
        m.licenseUrl,
        m.maturity,
        m.vendor,
      ],
      metadataStrings.map(([, value]) => value),
    )
    assert.deepStrictEqual(m.manifest, { a: "1", b: "2" })
  })

  it("GetPluginMetadataResponse encodes to fields 1-11", () => {
    const bytes = GetPluginMetadataResponse.encode({
      name: "pgbackrest.dalibo.com",
      version: "0.1.0",
      displayName: "pgBackRest",
      description: "Backups with pgBackRest",
      projectUrl: "https://example.org/project",
      repositoryUrl: "https://example.org/repo",
      license: "Apache-2.0",
      licenseUrl: "https://www.apache.org/licenses/LICENSE-2.0",
      maturity: "alpha",
      vendor: "Dalibo",
      manifest: { a: "1", b: "2" },
    }).finish()
    const f = scan(bytes)
    assert.deepStrictEqual(numbers(f), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 11])
    for (const [no, value] of metadataStrings) assert.strictEqual(stringAt(f, no), value)
    assert.deepStrictEqual(mapAt(f, 11), { a: "1", b: "2" })
  })

  it("PluginCapability: oneof type { Service service = 1 }, Service.type = 1", () => {
    const w = new BinaryWriter()
    writeTypeMessage(w, 1, 10)
    const capability = new BinaryWriter().tag(1, LEN).bytes(w.finish()).finish()
    const decoded = GetPluginCapabilitiesResponse.decode(capability)
    assert.deepStrictEqual(decoded.capabilities, [
      { type: { $case: "service", value: { type: PluginCapability_Service_Type.TYPE_METRICS } } },
    ])

    const bytes = GetPluginCapabilitiesResponse.encode({
      capabilities: [
        {
          type: { $case: "service", value: { type: PluginCapability_Service_Type.TYPE_LIFECYCLE_SERVICE } },
        },
        {
          type: {
            $case: "service",
            value: { type: PluginCapability_Service_Type.TYPE_INSTANCE_SIDECAR_INJECTION },
          },
        },
      ],
    }).finish()
    const caps = all(scan(bytes), 1).map((c) => scan(bytesOf(c)))
    assert.lengthOf(caps, 2)
    const types = caps.map((cap) => {
      assert.deepStrictEqual(numbers(cap), [1])
      return varintAt(messageAt(cap, 1), 1)
    })
    assert.deepStrictEqual(types, [4n, 8n])
  })

  it("ProbeResponse.ready = 1", () => {
    assert.strictEqual(varintAt(scan(ProbeResponse.encode({ ready: true }).finish()), 1), 1n)
    assert.isTrue(ProbeResponse.decode(new BinaryWriter().tag(1, VARINT).bool(true).finish()).ready)
  })
})

// ---------------------------------------------------------------------------------------------------------
// Operator lifecycle (cnpgi.operator_lifecycle.v1)

describe("operator lifecycle", () => {
  it("OperatorLifecycleRequest decodes operation_type = 1, cluster_definition = 2, object_definition = 3", () => {
    const w = new BinaryWriter()
    writeTypeMessage(w, 1, 6)
    writeBytes(w, 2, CLUSTER)
    writeBytes(w, 3, '{"apiVersion":"v1","kind":"Pod"}')
    const m = OperatorLifecycleRequest.decode(w.finish())
    assert.strictEqual(m.operationType?.type, OperatorOperationType_Type.TYPE_EVALUATE)
    assert.strictEqual(text(m.clusterDefinition), CLUSTER)
    assert.strictEqual(text(m.objectDefinition), '{"apiVersion":"v1","kind":"Pod"}')

    const back = scan(OperatorLifecycleRequest.encode(m).finish())
    assert.deepStrictEqual(numbers(back), [1, 2, 3])
    assert.strictEqual(varintAt(messageAt(back, 1), 1), 6n)
  })

  it("OperatorLifecycleResponse.json_patch = 1", () => {
    const patch = '[{"op":"add","path":"/spec/initContainers/-","value":{}}]'
    const f = scan(OperatorLifecycleResponse.encode({ jsonPatch: Buffer.from(patch) }).finish())
    assert.deepStrictEqual(numbers(f), [1])
    assert.strictEqual(stringAt(f, 1), patch)
    assert.strictEqual(
      text(OperatorLifecycleResponse.decode(writeBytes(new BinaryWriter(), 1, patch).finish()).jsonPatch),
      patch,
    )
  })

  it("OperatorLifecycleCapabilities: group = 1, kind = 2, repeated operation_types = 3", () => {
    const bytes = OperatorLifecycleCapabilitiesResponse.encode({
      lifecycleCapabilities: [
        {
          group: "",
          kind: "Pod",
          operationTypes: [
            { type: OperatorOperationType_Type.TYPE_CREATE },
            { type: OperatorOperationType_Type.TYPE_EVALUATE },
          ],
        },
        { group: "batch", kind: "Job", operationTypes: [{ type: OperatorOperationType_Type.TYPE_CREATE }] },
      ],
    }).finish()
    const top = scan(bytes)
    assert.deepStrictEqual(numbers(top), [1, 1])
    const [pod, job] = all(top, 1).map((c) => scan(bytesOf(c)))
    if (pod === undefined || job === undefined) throw new Error("missing capability")
    // proto3: the empty core group is not on the wire
    assert.deepStrictEqual(numbers(pod), [2, 3, 3])
    assert.strictEqual(stringAt(pod, 2), "Pod")
    assert.deepStrictEqual(
      all(pod, 3).map((op) => varintAt(scan(bytesOf(op)), 1)),
      [3n, 6n],
    )
    assert.deepStrictEqual(numbers(job), [1, 2, 3])
    assert.strictEqual(stringAt(job, 1), "batch")
    assert.strictEqual(stringAt(job, 2), "Job")

    const w = new BinaryWriter()
    w.tag(1, LEN).fork()
    writeString(w, 1, "batch")
    writeString(w, 2, "Job")
    writeTypeMessage(w, 3, 3)
    w.join()
    assert.deepStrictEqual(OperatorLifecycleCapabilitiesResponse.decode(w.finish()), {
      lifecycleCapabilities: [
        { group: "batch", kind: "Job", operationTypes: [{ type: OperatorOperationType_Type.TYPE_CREATE }] },
      ],
    })
  })
})

// ---------------------------------------------------------------------------------------------------------
// Operator (cnpgi.operator.v1)

describe("operator", () => {
  it("SetStatusInClusterRequest.cluster = 1, SetStatusInClusterResponse.json_status = 1", () => {
    const req = SetStatusInClusterRequest.decode(writeBytes(new BinaryWriter(), 1, CLUSTER).finish())
    assert.strictEqual(text(req.cluster), CLUSTER)

    const status = '{"firstRecoverabilityPoint":"2025-01-01T00:00:00Z"}'
    const f = scan(SetStatusInClusterResponse.encode({ jsonStatus: Buffer.from(status) }).finish())
    assert.deepStrictEqual(numbers(f), [1])
    assert.strictEqual(stringAt(f, 1), status)
    assert.strictEqual(
      text(SetStatusInClusterResponse.decode(writeBytes(new BinaryWriter(), 1, status).finish()).jsonStatus),
      status,
    )
  })

  it("ValidationError: repeated path_components = 1, value = 2, message = 3", () => {
    const f = scan(
      ValidationError.encode({ pathComponents: ["spec", "plugins"], value: "x", message: "bad" }).finish(),
    )
    assert.deepStrictEqual(numbers(f), [1, 1, 2, 3])
    assert.deepStrictEqual(stringsAt(f, 1), ["spec", "plugins"])
    assert.strictEqual(stringAt(f, 2), "x")
    assert.strictEqual(stringAt(f, 3), "bad")
  })
})

// ---------------------------------------------------------------------------------------------------------
// Capabilities with `oneof type { RPC rpc = 1 }` (operator, wal, backup, metrics, postgres)

describe("rpc capabilities", () => {
  it("encode as field 1 { type = 1 }", () => {
    const encoded = [
      OperatorCapability.encode({
        type: { $case: "rpc", value: { type: OperatorCapability_RPC_Type.TYPE_SET_STATUS_IN_CLUSTER } },
      }),
      WALCapability.encode({
        type: { $case: "rpc", value: { type: WALCapability_RPC_Type.TYPE_SET_FIRST_REQUIRED } },
      }),
      BackupCapability.encode({
        type: { $case: "rpc", value: { type: BackupCapability_RPC_Type.TYPE_BACKUP } },
      }),
      MetricsCapability.encode({
        type: { $case: "rpc", value: { type: MetricsCapability_RPC_Type.TYPE_METRICS } },
      }),
      PostgresCapability.encode({
        type: { $case: "rpc", value: { type: PostgresCapability_RPC_Type.TYPE_ENRICH_CONFIGURATION } },
      }),
    ].map((w) => {
      const f = scan(w.finish())
      assert.deepStrictEqual(numbers(f), [1])
      return varintAt(messageAt(f, 1), 1)
    })
    assert.deepStrictEqual(encoded, [5n, 4n, 1n, 1n, 1n])
  })

  it("decode from field 1 { type = 1 }", () => {
    const bytes = writeTypeMessage(new BinaryWriter(), 1, 2).finish()
    assert.deepStrictEqual(WALCapability.decode(bytes), {
      type: { $case: "rpc", value: { type: WALCapability_RPC_Type.TYPE_RESTORE_WAL } },
    })
    assert.deepStrictEqual(OperatorCapability.decode(bytes), {
      type: { $case: "rpc", value: { type: OperatorCapability_RPC_Type.TYPE_VALIDATE_CLUSTER_CHANGE } },
    })
  })

  it("RestoreJobHooksCapability and ReconcilerHooksCapability: plain kind = 1, no oneof", () => {
    const restore = scan(
      RestoreJobHooksCapability.encode({ kind: RestoreJobHooksCapability_Kind.KIND_RESTORE }).finish(),
    )
    assert.strictEqual(varintAt(restore, 1), 1n)
    const reconciler = scan(
      ReconcilerHooksCapability.encode({ kind: ReconcilerHooksCapability_Kind.KIND_BACKUP }).finish(),
    )
    assert.strictEqual(varintAt(reconciler, 1), 2n)
  })
})

// ---------------------------------------------------------------------------------------------------------
// WAL (cnpgi.wal.v1)

describe("wal", () => {
  it("WALArchiveRequest decodes fields 1-4, with optional check_empty_wal_archive", () => {
    const w = new BinaryWriter()
    writeBytes(w, 1, CLUSTER)
    writeString(w, 2, "/var/lib/postgresql/data/pgdata/pg_wal/000000010000000000000001")
    writeMap(w, 3, { k: "v" })
    const withoutFlag = WALArchiveRequest.decode(w.finish())
    assert.strictEqual(text(withoutFlag.clusterDefinition), CLUSTER)
    assert.strictEqual(
      withoutFlag.sourceFileName,
      "/var/lib/postgresql/data/pgdata/pg_wal/000000010000000000000001",
    )
    assert.deepStrictEqual(withoutFlag.parameters, { k: "v" })
    assert.isUndefined(withoutFlag.checkEmptyWalArchive)

    const explicitFalse = WALArchiveRequest.decode(new BinaryWriter().tag(4, VARINT).bool(false).finish())
    assert.strictEqual(explicitFalse.checkEmptyWalArchive, false)
    const explicitTrue = WALArchiveRequest.decode(new BinaryWriter().tag(4, VARINT).bool(true).finish())
    assert.strictEqual(explicitTrue.checkEmptyWalArchive, true)
  })

  it("WALArchiveRequest encodes check_empty_wal_archive = 4 with explicit presence", () => {
    const base = {
      clusterDefinition: Buffer.from(CLUSTER),
      sourceFileName: "/pg_wal/000000010000000000000001",
      parameters: { k: "v" },
    }
    const unset = scan(WALArchiveRequest.encode(base).finish())
    assert.deepStrictEqual(numbers(unset), [1, 2, 3])
    assert.strictEqual(stringAt(unset, 1), CLUSTER)
    assert.strictEqual(stringAt(unset, 2), "/pg_wal/000000010000000000000001")
    assert.deepStrictEqual(mapAt(unset, 3), { k: "v" })

    const falseSet = scan(WALArchiveRequest.encode({ ...base, checkEmptyWalArchive: false }).finish())
    assert.deepStrictEqual(numbers(falseSet), [1, 2, 3, 4])
    assert.strictEqual(varintAt(falseSet, 4), 0n)
  })

  it("WALRestoreRequest: fields 1-5, mode = 5", () => {
    const w = new BinaryWriter()
    writeBytes(w, 1, CLUSTER)
    writeString(w, 2, "000000010000000100000012")
    writeString(w, 3, "/var/lib/postgresql/data/pgdata/pg_wal/RECOVERYXLOG")
    writeMap(w, 4, { p: "q" })
    w.tag(5, VARINT).int32(2)
    const m = WALRestoreRequest.decode(w.finish())
    assert.strictEqual(text(m.clusterDefinition), CLUSTER)
    assert.strictEqual(m.sourceWalName, "000000010000000100000012")
    assert.strictEqual(m.destinationFileName, "/var/lib/postgresql/data/pgdata/pg_wal/RECOVERYXLOG")
    assert.deepStrictEqual(m.parameters, { p: "q" })
    assert.strictEqual(m.mode, WALRestoreRequest_Mode.MODE_REWIND)
    assert.strictEqual(
      WALRestoreRequest.decode(new Uint8Array(0)).mode,
      WALRestoreRequest_Mode.MODE_UNSPECIFIED,
    )

    const f = scan(WALRestoreRequest.encode({ ...m, mode: WALRestoreRequest_Mode.MODE_RECOVERY }).finish())
    assert.deepStrictEqual(numbers(f), [1, 2, 3, 4, 5])
    assert.strictEqual(varintAt(f, 5), 1n)
  })

  it("WALStatusResult: first_wal = 1, last_wal = 2, additional_information = 4", () => {
    const f = scan(
      WALStatusResult.encode({
        firstWal: "000000010000000000000001",
        lastWal: "000000010000000000000009",
        additionalInformation: { repo: "1" },
      }).finish(),
    )
    assert.deepStrictEqual(numbers(f), [1, 2, 4])
    assert.deepStrictEqual(mapAt(f, 4), { repo: "1" })
  })
})

// ---------------------------------------------------------------------------------------------------------
// Backup (cnpgi.backup.v1)

describe("backup", () => {
  it("BackupRequest: cluster_definition = 1, backup_definition = 2, parameters = 3", () => {
    const w = new BinaryWriter()
    writeBytes(w, 1, CLUSTER)
    writeBytes(w, 2, '{"kind":"Backup"}')
    writeMap(w, 3, { selectedRepository: "2", backupType: "incr" })
    const m = BackupRequest.decode(w.finish())
    assert.strictEqual(text(m.clusterDefinition), CLUSTER)
    assert.strictEqual(text(m.backupDefinition), '{"kind":"Backup"}')
    assert.deepStrictEqual(m.parameters, { selectedRepository: "2", backupType: "incr" })
  })

  const result: BackupResult = {
    backupId: "20250101-000000F",
    backupName: "backup-1",
    startedAt: 1_735_689_600,
    // beyond 2^32: int64 must not be truncated to 32 bits
    stoppedAt: 5_000_000_000,
    beginWal: "000000010000000000000002",
    endWal: "000000010000000000000003",
    beginLsn: "0/2000028",
    endLsn: "0/3000050",
    backupLabelFile: Buffer.from("START WAL LOCATION: 0/2000028"),
    tablespaceMapFile: Buffer.from("16384 /tbs"),
    instanceId: "pg-1",
    online: true,
    metadata: { repo: "1", type: "full" },
  }

  it("BackupResult encodes all 13 fields with upstream numbers", () => {
    const f = scan(BackupResult.encode(result).finish())
    assert.deepStrictEqual(numbers(f), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 13])
    assert.strictEqual(stringAt(f, 1), "20250101-000000F")
    assert.strictEqual(stringAt(f, 2), "backup-1")
    assert.strictEqual(varintAt(f, 3), 1_735_689_600n)
    assert.strictEqual(varintAt(f, 4), 5_000_000_000n)
    assert.strictEqual(stringAt(f, 5), "000000010000000000000002")
    assert.strictEqual(stringAt(f, 6), "000000010000000000000003")
    assert.strictEqual(stringAt(f, 7), "0/2000028")
    assert.strictEqual(stringAt(f, 8), "0/3000050")
    assert.strictEqual(stringAt(f, 9), "START WAL LOCATION: 0/2000028")
    assert.strictEqual(stringAt(f, 10), "16384 /tbs")
    assert.strictEqual(stringAt(f, 11), "pg-1")
    assert.strictEqual(varintAt(f, 12), 1n)
    assert.deepStrictEqual(mapAt(f, 13), { repo: "1", type: "full" })
  })

  it("BackupResult decodes hand-built bytes (int64 started_at/stopped_at as numbers)", () => {
    const w = new BinaryWriter()
    writeString(w, 1, "20250101-000000F")
    writeString(w, 2, "backup-1")
    w.tag(3, VARINT).int64(1_735_689_600)
    w.tag(4, VARINT).int64(5_000_000_000n)
    writeString(w, 5, "000000010000000000000002")
    writeString(w, 6, "000000010000000000000003")
    writeString(w, 7, "0/2000028")
    writeString(w, 8, "0/3000050")
    writeBytes(w, 9, "START WAL LOCATION: 0/2000028")
    writeBytes(w, 10, "16384 /tbs")
    writeString(w, 11, "pg-1")
    w.tag(12, VARINT).bool(true)
    writeMap(w, 13, { repo: "1", type: "full" })
    const m = BackupResult.decode(w.finish())
    assert.deepStrictEqual(
      { ...m, backupLabelFile: text(m.backupLabelFile), tablespaceMapFile: text(m.tablespaceMapFile) },
      { ...result, backupLabelFile: "START WAL LOCATION: 0/2000028", tablespaceMapFile: "16384 /tbs" },
    )
    assert.strictEqual(typeof m.startedAt, "number")
  })
})

// ---------------------------------------------------------------------------------------------------------
// Restore job hooks (cnpgi.wal.v1, service RestoreJobHooks)

describe("restore job", () => {
  it("RestoreRequest: cluster_definition = 1, optional check_empty_wal_archive = 2", () => {
    const w = writeBytes(new BinaryWriter(), 1, CLUSTER)
    const unset = RestoreRequest.decode(w.finish())
    assert.strictEqual(text(unset.clusterDefinition), CLUSTER)
    assert.isUndefined(unset.checkEmptyWalArchive)

    const set = RestoreRequest.decode(
      writeBytes(new BinaryWriter(), 1, CLUSTER).tag(2, VARINT).bool(false).finish(),
    )
    assert.strictEqual(set.checkEmptyWalArchive, false)

    const f = scan(
      RestoreRequest.encode({ clusterDefinition: Buffer.from(CLUSTER), checkEmptyWalArchive: true }).finish(),
    )
    assert.deepStrictEqual(numbers(f), [1, 2])
    assert.strictEqual(varintAt(f, 2), 1n)
  })

  it("RestoreResponse: restore_config = 1, repeated envs = 2", () => {
    const config =
      "recovery_target_action = promote\nrestore_command = '/controller/manager wal-restore %f %p'\n"
    const f = scan(RestoreResponse.encode({ restoreConfig: config, envs: ["A=1", "B=2"] }).finish())
    assert.deepStrictEqual(numbers(f), [1, 2, 2])
    assert.strictEqual(stringAt(f, 1), config)
    assert.deepStrictEqual(stringsAt(f, 2), ["A=1", "B=2"])

    const w = new BinaryWriter()
    writeString(w, 1, config)
    writeString(w, 2, "A=1")
    writeString(w, 2, "B=2")
    assert.deepStrictEqual(RestoreResponse.decode(w.finish()), {
      restoreConfig: config,
      envs: ["A=1", "B=2"],
    })
  })
})

// ---------------------------------------------------------------------------------------------------------
// Reconciler hooks (cnpgi.reconciler.v1)

describe("reconciler hooks", () => {
  it("ReconcilerHooksRequest: cluster_definition = 1, resource_definition = 2", () => {
    const w = new BinaryWriter()
    writeBytes(w, 1, CLUSTER)
    writeBytes(w, 2, '{"kind":"Backup"}')
    const m = ReconcilerHooksRequest.decode(w.finish())
    assert.strictEqual(text(m.clusterDefinition), CLUSTER)
    assert.strictEqual(text(m.resourceDefinition), '{"kind":"Backup"}')
  })

  it("ReconcilerHooksResult: behavior = 1, int64 requeue_after = 2", () => {
    const f = scan(
      ReconcilerHooksResult.encode({
        behavior: ReconcilerHooksResult_Behavior.BEHAVIOR_TERMINATE,
        requeueAfter: 30,
      }).finish(),
    )
    assert.deepStrictEqual(numbers(f), [1, 2])
    assert.strictEqual(varintAt(f, 1), 3n)
    assert.strictEqual(varintAt(f, 2), 30n)

    const m = ReconcilerHooksResult.decode(
      new BinaryWriter().tag(1, VARINT).int32(2).tag(2, VARINT).int64(45).finish(),
    )
    assert.deepStrictEqual(m, { behavior: ReconcilerHooksResult_Behavior.BEHAVIOR_REQUEUE, requeueAfter: 45 })
  })
})

// ---------------------------------------------------------------------------------------------------------
// Metrics (cnpgi.metrics.v1)

describe("metrics", () => {
  it("Metric: fq_name = 1, help = 2, variable_labels = 3, const_labels = 4, value_type = 5 { type = 1 }", () => {
    const f = scan(
      Metric.encode({
        fqName: "cnpg_pgbackrest_last_backup_timestamp",
        help: "Last backup end time",
        variableLabels: ["repo", "type"],
        constLabels: { stanza: "main" },
        valueType: { type: MetricType_Type.TYPE_GAUGE },
      }).finish(),
    )
    assert.deepStrictEqual(numbers(f), [1, 2, 3, 3, 4, 5])
    assert.strictEqual(stringAt(f, 1), "cnpg_pgbackrest_last_backup_timestamp")
    assert.strictEqual(stringAt(f, 2), "Last backup end time")
    assert.deepStrictEqual(stringsAt(f, 3), ["repo", "type"])
    assert.deepStrictEqual(mapAt(f, 4), { stanza: "main" })
    assert.strictEqual(varintAt(messageAt(f, 5), 1), 2n)

    const w = new BinaryWriter()
    writeString(w, 1, "m")
    writeString(w, 2, "h")
    writeString(w, 3, "l")
    writeMap(w, 4, { c: "d" })
    writeTypeMessage(w, 5, 1)
    assert.deepStrictEqual(Metric.decode(w.finish()), {
      fqName: "m",
      help: "h",
      variableLabels: ["l"],
      constLabels: { c: "d" },
      valueType: { type: MetricType_Type.TYPE_COUNTER },
    })
  })

  it("CollectMetric: double value = 1, fq_name = 2, variable_labels = 3", () => {
    const f = scan(CollectMetric.encode({ value: 1.5, fqName: "m", variableLabels: ["1", "full"] }).finish())
    assert.deepStrictEqual(numbers(f), [1, 2, 3, 3])
    assert.strictEqual(doubleAt(f, 1), 1.5)
    assert.strictEqual(stringAt(f, 2), "m")
    assert.deepStrictEqual(stringsAt(f, 3), ["1", "full"])

    const w = new BinaryWriter().tag(1, WireType.Bit64).double(42.25)
    writeString(w, 2, "m")
    writeString(w, 3, "x")
    assert.deepStrictEqual(CollectMetric.decode(w.finish()), {
      value: 42.25,
      fqName: "m",
      variableLabels: ["x"],
    })
  })
})

// ---------------------------------------------------------------------------------------------------------
// Postgres (cnpgi.identity.v1, service Postgres)

describe("postgres", () => {
  it("EnrichConfigurationRequest: configs = 1, cluster_definition = 2, operation_type = 3 { type = 1 }", () => {
    const w = new BinaryWriter()
    writeMap(w, 1, { archive_mode: "on" })
    writeBytes(w, 2, CLUSTER)
    writeTypeMessage(w, 3, 3)
    const m = EnrichConfigurationRequest.decode(w.finish())
    assert.deepStrictEqual(m.configs, { archive_mode: "on" })
    assert.strictEqual(text(m.clusterDefinition), CLUSTER)
    assert.strictEqual(m.operationType?.type, OperationType_Type.TYPE_RECONCILE)
  })
})
