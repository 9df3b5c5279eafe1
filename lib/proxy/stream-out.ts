// A streamed upstream body on its way to the client. Fastify writes a streamed reply's head with its first body
// byte: an SSE upstream that flushes its head at once would reach the client only with its first event. Here
// the head goes out as soon as Fastify pipes the body (the upstream's head is in), each chunk as it comes (no
// buffering, text/event-stream included), and a body that fails once the head went out is cut: the client sees
// an incomplete response (no last chunk), the cut is logged at warn and counted (proxy_streams_cut_total).
import type { ServerResponse } from 'node:http'
import type { RouteCounters } from '../metrics/proxy-metrics.js'
import type { ProxyReply } from './types.js'

/** What is read of a streamed body when Fastify pipes it. */
interface PipedSource { readonly readableLength?: number }

/** Fastify pipes the body once its onSend hooks ran and the headers are set: write the head now. */
function flushHead (this: ServerResponse, src: PipedSource): void {
  // data already waiting goes out with the head in one write; else the head goes alone, now
  if (!this.headersSent && (src.readableLength ?? 0) === 0) this.flushHeaders()
}

/** Send `body` to the client streamed, head first. */
export function streamOut (reply: ProxyReply, body: NodeJS.ReadableStream, upstream: string, counters: RouteCounters | undefined): void {
  const raw = reply.raw
  raw.once('pipe', flushHead)
  body.once('error', (err: Error) => { streamFailed(reply, err, upstream, counters) })
  reply.send(body)
}

/**
 * The upstream body failed (stalled past timeouts.body, reset, or the run's deadline aborted it). Once the head
 * went out, Fastify destroys the client's response: count and log that cut. A client that left first is no cut;
 * a failure before the head went out is answered by Fastify's error path.
 */
function streamFailed (reply: ProxyReply, err: Error, upstream: string, counters: RouteCounters | undefined): void {
  const raw = reply.raw
  if (!raw.headersSent || raw.writableFinished || raw.destroyed) return
  if (counters !== undefined) counters.streamsCut++
  const code = (err as { code?: unknown }).code
  reply.log.warn({ upstream, err: { code, message: err.message } }, 'upstream body failed after the response head was sent: stream cut')
}
