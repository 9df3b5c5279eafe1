import { classifyError, type ErrorClass } from '../failover/classify-error.js'
import { GatewayError, type GatewayErrorName } from '../errors.js'

const KIND_TO_ERROR: Record<ErrorClass, GatewayErrorName> = {
  connect: 'UPSTREAM_CONNECT',
  reset: 'UPSTREAM_RESET',
  timeout: 'UPSTREAM_TIMEOUT',
  other: 'UPSTREAM_BAD_RESPONSE',
}

/** Was the connect itself what timed out? lib/failover calls it 'connect' (safe to replay); the client hears 504. */
function isConnectTimeout (err: unknown): boolean {
  let e: unknown = err
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    if ((e as { code?: unknown }).code === 'UND_ERR_CONNECT_TIMEOUT') return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

/** The client-facing error code for a failed try: 502 connect/reset/other, 504 timeout (connect timeout included). */
export function upstreamErrorName (kind: ErrorClass, cause?: unknown): GatewayErrorName {
  return kind === 'connect' && isConnectTimeout(cause) ? 'UPSTREAM_TIMEOUT' : KIND_TO_ERROR[kind]
}

/** The client-facing error for a failed try (see upstreamErrorName). */
export function upstreamError (kind: ErrorClass, upstream: string, cause?: unknown): GatewayError {
  return new GatewayError(upstreamErrorName(kind, cause), upstream, { cause })
}

export { classifyError, type ErrorClass }

/** Did the upstream's response head pass the client's maxHeaderSize (undici's HeadersOverflowError)? */
export function isHeadersOverflow (err: unknown): boolean {
  let e: unknown = err
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    if ((e as { code?: unknown }).code === 'UND_ERR_HEADERS_OVERFLOW') return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

/** undici refused the request before sending a byte (a header it does not support, an invalid value), or the body came short. */
const CLIENT_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH'])

/**
 * Did the client cause this failed try? It left before its request body was complete, or its request was one
 * undici refuses before a byte reached the upstream. Such a try never counts against the target (passive health,
 * breaker) and is never retried.
 */
export function isClientFault (err: unknown, client: { complete: boolean, destroyed: boolean } | undefined): boolean {
  if (client !== undefined && client.destroyed && !client.complete) return true
  let e: unknown = err
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && CLIENT_CODES.has(code)) return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}
