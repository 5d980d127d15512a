import { execFile } from "node:child_process"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { promisify } from "node:util"
import { Effect } from "effect"

/** Throwaway CAs and leaf certificates made with the openssl CLI, for mutual-TLS tests. */

const run = promisify(execFile)

export interface KeyPair {
  readonly cert: string
  readonly key: string
}

const openssl = (cwd: string, args: ReadonlyArray<string>) =>
  Effect.tryPromise({
    try: () => run("openssl", [...args], { cwd }),
    catch: (error) =>
      new Error(`openssl ${args[0]} failed: ${error instanceof Error ? error.message : String(error)}`),
  })

const NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

/** A self-signed CA named `name` in `dir`. */
export const makeCa = (dir: string, name: string): Effect.Effect<KeyPair, Error> =>
  openssl(dir, [
    "req",
    "-x509",
    ...NEW_KEY,
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.crt`,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]).pipe(Effect.as({ cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) }))

const EXTENSIONS = {
  server: ["subjectAltName = DNS:localhost, IP:127.0.0.1", "extendedKeyUsage = serverAuth"],
  client: ["extendedKeyUsage = clientAuth"],
}

/** A leaf certificate signed by `ca`: for localhost/127.0.0.1 (server) or for a client. */
export const issue = (
  dir: string,
  ca: KeyPair,
  name: string,
  usage: "server" | "client",
): Effect.Effect<KeyPair, Error> =>
  Effect.gen(function* () {
    const extensions = path.join(dir, `${name}.ext`)
    yield* Effect.promise(() =>
      fs.writeFile(
        extensions,
        [
          ...EXTENSIONS[usage],
          "basicConstraints = critical, CA:FALSE",
          "keyUsage = critical, digitalSignature",
          "",
        ].join("\n"),
      ),
    )
    yield* openssl(dir, [
      "req",
      ...NEW_KEY,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${name}`,
    ])
    yield* openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      ca.cert,
      "-CAkey",
      ca.key,
      "-CAcreateserial",
      "-out",
      `${name}.crt`,
      "-days",
      "2",
      "-extfile",
      extensions,
    ])
    return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) }
  })

/**
 * A directory laid out like a Secret volume the kubelet manages: `tls.crt`, `tls.key` and `ca.crt` are
 * symlinks through `..data`, itself a symlink to a timestamped directory. `publish` swaps `..data`
 * atomically, as the kubelet does when the Secret changes (fs.watch on the files sees nothing).
 */
export const secretVolume = (dir: string) => {
  let version = 0
  const publish = (files: {
    readonly "tls.crt": string
    readonly "tls.key": string
    readonly "ca.crt": string
  }) =>
    Effect.promise(async () => {
      version += 1
      const target = `..v${version}`
      await fs.mkdir(path.join(dir, target), { recursive: true })
      for (const [name, source] of Object.entries(files)) {
        await fs.copyFile(source, path.join(dir, target, name))
      }
      await fs.symlink(target, path.join(dir, "..data_tmp"))
      await fs.rename(path.join(dir, "..data_tmp"), path.join(dir, "..data"))
      if (version === 1) {
        for (const name of Object.keys(files)) {
          await fs.symlink(path.join("..data", name), path.join(dir, name))
        }
      }
    })
  return {
    publish,
    files: {
      serverCert: path.join(dir, "tls.crt"),
      serverKey: path.join(dir, "tls.key"),
      clientCa: path.join(dir, "ca.crt"),
    },
  }
}
