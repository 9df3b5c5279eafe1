// Maps transport errors (undici, node:net, @fastify/reply-from wrappers) to a retry reason.

export type ErrorClass = 'connect' | 'reset' | 'timeout' | 'other'

/** The request never reached an upstream: safe to retry for every method. */
const CONNECT = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENETDOWN',
  'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT', 'ERR_TLS_CERT_ALTNAME_INVALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED',
])

/** The connection broke after the request may have been sent. */
const RESET = new Set([
  'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_HTTP2_STREAM_CANCEL',
])

const TIMEOUT = new Set([
  'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT', 'ESOCKETTIMEDOUT',
  // @fastify/reply-from's own timeouts
  'FST_REPLY_FROM_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT', 'FST_REPLY_FROM_HTTP2_REQUEST_TIMEOUT',
  'FST_REPLY_FROM_HTTP2_SESSION_TIMEOUT',
])

function classifyOne (e: { code?: unknown, syscall?: unknown, name?: unknown }): ErrorClass {
  const code = e.code
  if (typeof code === 'string') {
    // a timed-out connect() is still a connect failure: nothing was sent
    if (e.syscall === 'connect' || e.syscall === 'getaddrinfo' || CONNECT.has(code)) return 'connect'
    if (RESET.has(code)) return 'reset'
    if (TIMEOUT.has(code)) return 'timeout'
  }
  // AbortSignal.timeout() rejects with a DOMException named TimeoutError; a plain abort stays 'other'
  if (e.name === 'TimeoutError') return 'timeout'
  return 'other'
}

/**
 * Classify an error for the retry policy and the breaker. Wrappers (reply-from, fetch)
 * keep the original in `cause`: the deepest recognised cause wins.
 * A client abort (AbortError, UND_ERR_ABORTED) is 'other': never retried.
 */
export function classifyError (err: unknown): ErrorClass {
  let result: ErrorClass = 'other'
  let e: unknown = err
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    const c = classifyOne(e as { code?: unknown, syscall?: unknown, name?: unknown })
    if (c !== 'other') result = c
    e = (e as { cause?: unknown }).cause
  }
  return result
}
