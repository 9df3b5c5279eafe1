// TLS settings of an upstream's HTTPS targets: file paths in the config, read once into the connect options
// that undici (proxied requests) and the active health checks alike open their connections with.
import { readFileSync } from 'node:fs'

export interface UpstreamTlsSpec {
  /** CA certificate file (PEM) that signs the targets' certificates. */
  ca?: string
  /** Client certificate and key files (PEM), for targets that ask for one (mTLS). */
  cert?: string
  key?: string
  /** Server name (SNI and certificate check); default: the target's host. */
  servername?: string
  rejectUnauthorized?: boolean
}

export interface TlsConnectOptions {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  servername?: string
  rejectUnauthorized?: boolean
}

/** The connect options of a TLS spec (files read now; a missing file throws with its path). */
export function loadTls (spec: UpstreamTlsSpec | undefined): TlsConnectOptions | undefined {
  if (spec === undefined) return undefined
  const out: TlsConnectOptions = {}
  if (spec.ca !== undefined) out.ca = readFileSync(spec.ca)
  if (spec.cert !== undefined) out.cert = readFileSync(spec.cert)
  if (spec.key !== undefined) out.key = readFileSync(spec.key)
  if (spec.servername !== undefined) out.servername = spec.servername
  if (spec.rejectUnauthorized !== undefined) out.rejectUnauthorized = spec.rejectUnauthorized
  return out
}
