import type * as CommandExecutor from "@effect/platform/CommandExecutor"
import * as FileSystem from "@effect/platform/FileSystem"
import { Effect } from "effect"
import { execOk, type RigError, rigError } from "./exec.js"

/** PEM files of a throwaway CA and of a server certificate it signed. */
export interface Certificates {
  /** CA certificate, mode 0644 so that pgBackRest running as postgres can read it. */
  readonly caFile: string
  /** Server key and certificate; the key stays root's (0600). */
  readonly keyFile: string
  readonly certFile: string
}

/** openssl extensions of a server certificate for localhost (the rig's S3 endpoint, the fault proxy). */
export const SERVER_EXTENSIONS = [
  // pgBackRest 2.45 matches the host name against DNS names only; the IP entry is for other clients.
  "subjectAltName = DNS:localhost, IP:127.0.0.1",
  "basicConstraints = critical, CA:FALSE",
  "keyUsage = critical, digitalSignature, keyEncipherment",
  "extendedKeyUsage = serverAuth",
  "",
].join("\n")

/** Writes a CA and a certificate for localhost / 127.0.0.1 signed by it into `dir`, with the openssl CLI. */
export const makeCertificates = (
  dir: string,
): Effect.Effect<Certificates, RigError, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const openssl = (args: string) => {
      const argv = args.split(" ")
      return execOk(`openssl ${argv[0]}`, "openssl", argv, { cwd: dir })
    }
    const newKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    yield* openssl(
      `req -x509 ${newKey} -keyout ca.key -out ca.crt -days 2 -subj /CN=cnpg-pgbackrest-test-CA` +
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
    )
    yield* openssl(`req ${newKey} -keyout server.key -out server.csr -subj /CN=localhost`)
    yield* fs
      .writeFileString(`${dir}/server.ext`, SERVER_EXTENSIONS)
      .pipe(Effect.mapError((e) => rigError("server.ext", e.message)))
    yield* openssl(
      "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext",
    )
    yield* fs.chmod(`${dir}/ca.crt`, 0o644).pipe(Effect.mapError((e) => rigError("chmod ca.crt", e.message)))
    return { caFile: `${dir}/ca.crt`, keyFile: `${dir}/server.key`, certFile: `${dir}/server.crt` }
  })
