import type { SecureContextOptions } from "node:tls"
import { ServerCredentials } from "@grpc/grpc-js"

/** PEM contents of the operator-facing server: its certificate and key, and the CA of allowed clients. */
export interface MutualTlsMaterial {
  readonly cert: Buffer
  readonly key: Buffer
  readonly clientCa: Buffer
}

const contextOf = (material: MutualTlsMaterial): SecureContextOptions => ({
  cert: material.cert,
  key: material.key,
  ca: material.clientCa,
  minVersion: "TLSv1.3",
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

  rotate(material: MutualTlsMaterial): void {
    this.updateSecureContextOptions(contextOf(material))
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this
  }
}
