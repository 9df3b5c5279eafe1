// Answers the proxy gives itself (errors, the static fallback) and dropping an upstream response.
import type { GatewayError } from '../errors.js'
import type { FallbackResponse } from './failover-registry.js'
import type { ProxyReply } from './state.js'

export function sendError (reply: ProxyReply, err: GatewayError): void {
  if (reply.sent) return
  reply.code(err.statusCode)
  reply.type('application/json; charset=utf-8')
  reply.send(JSON.stringify(err.toJSON()))
}

/** A route's static `fallbackResponse`. */
export function sendStatic (reply: ProxyReply, fr: FallbackResponse): void {
  if (reply.sent) return
  reply.code(fr.status ?? 503)
  reply.removeHeader('content-length')
  if (fr.headers !== undefined) reply.headers(fr.headers)
  if (fr.body === undefined) reply.send('')
  else if (typeof fr.body === 'string') reply.send(fr.body)
  else {
    reply.type('application/json; charset=utf-8')
    reply.send(JSON.stringify(fr.body))
  }
}

/** Drop a response the client will not get: read a small rest (keeps the connection), else destroy. */
export function discard (stream: { destroy?: () => void, dump?: () => Promise<void> }): void {
  if (typeof stream.dump === 'function') stream.dump().catch(() => {})
  else stream.destroy?.()
}
