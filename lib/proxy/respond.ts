// Answers the proxy gives itself (the static fallback, a body that failed), small upstream bodies taken whole, and
// dropping an upstream response. Its errors are raised through Fastify (lib/errors.ts raiseError), never written here.
import { raiseError } from '../errors.js'
import { classifyError, upstreamError } from './classify.js'
import type { FallbackResponse } from './failover-registry.js'
import type { RouteCounters } from '../metrics/proxy-metrics.js'
import { streamOut } from './stream-out.js'
import type { ProxyReply } from './types.js'

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

/** Largest upstream body the proxy sends as one buffer instead of piping it. */
export const WHOLE_BODY_MAX = 16 * 1024

/** An upstream response body: undici's (a Readable that can also be read whole) or the direct path's (direct.ts ResponseSink: read whole, or asked for a Readable). */
export interface UpstreamBody {
  bytes?: () => Promise<Uint8Array>
  readable?: () => NodeJS.ReadableStream
}

/**
 * Whether to read an upstream body whole and send it as one buffer: declared by Content-Length, at most
 * WHOLE_BODY_MAX bytes, with a Content-Type (Fastify would add one to a buffer), not a HEAD, and an undici body
 * (`bytes()`). A buffer reply skips the stream machinery (pipe, end-of-stream listeners on both streams, one
 * `setHeader` per header): bench figures in BENCHMARKS.md. Larger, unsized or slower bodies stream as before.
 */
export function takeWhole (body: UpstreamBody, reply: ProxyReply): boolean {
  if (typeof body.bytes !== 'function' || reply.request.method === 'HEAD') return false
  const declared = reply.getHeader('content-length')
  if (declared === undefined || reply.getHeader('content-type') === undefined) return false
  const len = Number(declared)
  return len > 0 && len <= WHOLE_BODY_MAX
}

/** An upstream response as reply-from hands it to onResponse, or the direct path's sink. */
export interface UpstreamResponse {
  stream: UpstreamBody & { destroy?: () => void, dump?: () => Promise<void> }
}

/** The client gets the upstream's response: a small body read whole and sent as one buffer, else streamed head first (stream-out.ts). */
export function deliver (reply: ProxyReply, res: UpstreamResponse, upstream: string, counters?: RouteCounters): void {
  const body = res.stream
  if (takeWhole(body, reply)) {
    body.bytes!().then((u8) => {
      if (!reply.sent && !reply.raw.destroyed) reply.send(Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength))
    }, (err: Error) => { bodyFailed(reply, err, upstream) })
    return
  }
  streamOut(reply, body.readable !== undefined ? body.readable() : body as unknown as NodeJS.ReadableStream, upstream, counters)
}

/** The upstream failed in the middle of a body taken whole: nothing reached the client yet, so it gets a 502, not half a body. */
function bodyFailed (reply: ProxyReply, error: Error, upstream: string): void {
  if (reply.sent || reply.raw.destroyed) return
  for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name) // the upstream's, for the body that never came
  raiseError(reply, upstreamError(classifyError(error), upstream, error))
}
