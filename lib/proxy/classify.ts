import { GatewayError, type GatewayErrorName } from '../errors.js'

/** What went wrong with an upstream try, as the error mapping and failover see it. */
export type FailureKind = 'connect' | 'reset' | 'timeout' | 'aborted' | 'other'

const CONNECT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'EADDRNOTAVAIL'])
const TIMEOUT = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const RESET = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'])

/** Walk `cause` chains (undici wraps socket errors) and classify by code. */
export function classifyError (err: unknown): FailureKind {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e != null; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') {
      if (code === 'UND_ERR_ABORTED' || code === 'ABORT_ERR') return 'aborted'
      if (CONNECT.has(code)) return 'connect'
      if (TIMEOUT.has(code)) return 'timeout'
      if (RESET.has(code)) return 'reset'
    }
    if ((e as { name?: unknown }).name === 'AbortError') return 'aborted'
    e = (e as { cause?: unknown }).cause
  }
  return 'other'
}

const KIND_TO_ERROR: Record<FailureKind, GatewayErrorName> = {
  connect: 'UPSTREAM_CONNECT',
  reset: 'UPSTREAM_RESET',
  timeout: 'UPSTREAM_TIMEOUT',
  aborted: 'UPSTREAM_BAD_RESPONSE',
  other: 'UPSTREAM_BAD_RESPONSE',
}

/** The client-facing error for a failed try: 502 connect/reset/other, 504 timeout. */
export function upstreamError (kind: FailureKind, upstream: string, cause?: unknown): GatewayError {
  return new GatewayError(KIND_TO_ERROR[kind], upstream, { cause })
}
