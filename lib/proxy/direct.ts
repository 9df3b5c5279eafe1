// The direct path of a try: the request goes to undici's dispatch() as the proxy built it, and the response comes
// back into a ResponseSink, the undici handler that takes the upstream's head and body straight to the Fastify
// reply. It does what @fastify/reply-from plus undici's request() did for a try (same headers out, same head and
// body in, same callbacks into the RequestRun), without their per-request work: no URL cache key, no retry
// wrapper, no parsed-headers copy, and no Readable stream for a small body, which is gathered and sent as one
// buffer (bench/direct-ab.ts measures the difference). A body that streams gets a Readable of its own (BodyStream).
// reply.from() stays the path of bodies a content-type parser turned into values (reply-from serialises them).
import { Readable } from 'node:stream'
import { errors, util, type Dispatcher } from 'undici'
import type { TrustFn } from '../trust-proxy.js'
import type { AbortFn } from './attempt.js'
import { setForwarded, stripHopByHop, withoutHopByHop, type HeaderBag } from './headers.js'
import type { ProxyReply } from './types.js'

/** A body the run holds to send again on a retry (small, declared, read whole). */
export interface HeldBody {
  readonly buf: Buffer
  readonly contentType: string
}

/** What the sink tells of a response: the RequestRun's side of reply-from's callbacks. */
export interface SinkOwner {
  /** Do the response headers belong to a response the client gets (not a dropped try)? */
  passes (): boolean
  /** The client gets the response (`res.stream` read whole, streamed, dumped or destroyed), or it is dropped. */
  respond (reply: ProxyReply, res: { stream: ResponseSink }): void
  /** The response could not be taken (its status is not one Fastify sends). */
  replyFromError (error: Error): void
}

/** The client request the proxy reads (Node's IncomingMessage). */
interface ClientRequest {
  readonly httpVersionMajor?: number
  readonly complete?: boolean
  readonly aborted?: boolean
  readonly socket?: { readonly remoteAddress?: string, readonly localPort?: number, readonly encrypted?: boolean } | null
}

const NO_SOCKET = {}
/** What a dropped response may still read to keep its connection (undici's dump() default). */
const DUMP_LIMIT = 128 * 1024

/** An origin's `host[:port]`, as reply-from sent it in Host (`new URL(origin).host`). */
const hosts = new Map<string, string>()
function hostOf (origin: string): string {
  let h = hosts.get(origin)
  if (h === undefined) {
    h = new URL(origin).host
    if (hosts.size > 10_000) hosts.clear()
    hosts.set(origin, h)
  }
  return h
}

/**
 * The headers a try sends: the client's, less hop-by-hop ones (and those `Connection` names), less `Expect`
 * (Node answered the client's 100-continue already), Host set to the target's unless the route preserves the
 * client's, and the forwarding headers (headers.ts setForwarded). Pseudo-headers of an HTTP/2 client are not sent.
 */
export function requestHeaders (src: Record<string, string | string[] | undefined>, raw: ClientRequest | undefined, origin: string, preserveHost: boolean, trust: TrustFn | undefined, held: HeldBody | undefined): HeaderBag {
  // copied key by key, not spread: on Node 20's V8 an object spread from Node's null-prototype headers takes
  // ~1 µs for each property added to it afterwards (the forwarding headers: ~6 µs a request); Node 24 does not
  const headers: HeaderBag = {}
  for (const k in src) if (k.charCodeAt(0) !== 58) headers[k] = src[k] // not an HTTP/2 pseudo-header
  stripHopByHop(headers)
  if (headers.expect !== undefined) headers.expect = undefined
  const host = (src.host ?? src[':authority']) as string | undefined
  headers.host = preserveHost && host !== undefined ? host : hostOf(origin)
  if (held !== undefined) {
    headers['content-length'] = String(held.buf.length)
    headers['content-type'] = held.contentType
  }
  return setForwarded(headers, raw?.socket ?? NO_SOCKET, host, trust)
}

const HEAD = 0
const WHOLE = 1
const STREAM = 2
const DROP = 3
const DONE = 4

/**
 * The undici handler of one try's response (inside the try's TryHandler). On the head: the end-to-end headers and
 * the status go on the reply (for a response the client gets), and the owner's respond() says what becomes of the
 * body: read whole (bytes()), streamed (readable()), dumped (dump()) or cut (destroy()).
 */
export class ResponseSink implements Dispatcher.DispatchHandler {
  private readonly reply: ProxyReply
  private readonly owner: SinkOwner
  private abortFn: AbortFn | undefined = undefined
  private resumeFn: (() => void) | undefined = undefined
  private mode = HEAD
  private chunks: Buffer[] | undefined = undefined
  private size = 0
  private resolve: ((buf: Buffer) => void) | undefined = undefined
  private reject: ((err: Error) => void) | undefined = undefined
  private body: BodyStream | undefined = undefined

  constructor (reply: ProxyReply, owner: SinkOwner) {
    this.reply = reply
    this.owner = owner
  }

  /** The sink is the response's `stream` too (respond() and deliver() read it there). */
  get stream (): ResponseSink { return this }

  onConnect (abort: AbortFn): void { this.abortFn = abort }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true // 1xx: the try handler passed a 103 on already
    this.resumeFn = resume
    const reply = this.reply
    const raw = reply.request.raw as unknown as ClientRequest
    const owner = this.owner
    if (owner.passes()) {
      const headers = withoutHopByHop(util.parseHeaders(rawHeaders) as HeaderBag)
      for (const name in headers) {
        const v = headers[name]
        if (v !== undefined) reply.header(name, v)
      }
      const h2 = raw.httpVersionMajor === 2
      // an HTTP/1 connection cannot be reused before its request body was read: close it if the answer came first
      if (!h2 && raw.complete === false) reply.header('connection', 'close')
      try {
        reply.code(statusCode)
      } catch (err) {
        this.mode = DROP
        owner.replyFromError(new Error(`the upstream answered with status ${statusCode}`, { cause: err }))
        return true
      }
    }
    if (raw.aborted === true) {
      // the client left before the answer came: nothing to send it
      this.destroy()
      return true
    }
    owner.respond(reply, this)
    if (this.mode === HEAD) this.mode = DROP
    return true
  }

  onData (chunk: Buffer): boolean {
    switch (this.mode) {
      case WHOLE:
        this.chunks!.push(chunk)
        return true
      case STREAM:
        return this.body!.push(chunk)
      default:
        this.size += chunk.length
        if (this.size > DUMP_LIMIT && this.mode === DROP) this.cut(new errors.RequestAbortedError())
        return true
    }
  }

  onComplete (_trailers?: string[] | null): void {
    const mode = this.mode
    this.mode = DONE
    if (mode === WHOLE) {
      const chunks = this.chunks!
      this.chunks = undefined
      this.resolve!(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks))
    } else if (mode === STREAM) {
      this.body!.push(null)
    }
  }

  onError (err: Error): void {
    const mode = this.mode
    this.mode = DONE
    // before the head, the try handler tells the run (tryFailed); a dropped body's failure is no one's concern
    if (mode === WHOLE) {
      this.chunks = undefined
      this.reject!(err)
    } else if (mode === STREAM) {
      this.body!.destroy(err)
    }
  }

  // --- the body, as respond() and deliver() take it ---

  /** Read the body whole (a small one with Content-Length: respond.ts takeWhole). */
  bytes (): Promise<Buffer> {
    this.mode = WHOLE
    this.chunks = []
    return new Promise((resolve, reject) => { this.resolve = resolve; this.reject = reject })
  }

  /** Stream the body: a Readable fed by undici, paused while the client reads slowly. */
  readable (): Readable {
    this.mode = STREAM
    this.body = new BodyStream(this)
    return this.body
  }

  /** Drop the body: read what is left (up to 128 KiB) to keep the connection, else cut it. */
  dump (): Promise<void> {
    if (this.mode !== DONE) this.mode = DROP
    return Promise.resolve()
  }

  /** Drop the body and the connection now. */
  destroy (): void {
    if (this.mode === DONE) return
    this.mode = DROP
    this.cut(new errors.RequestAbortedError())
  }

  /** @internal the stream wants more. */
  more (): void { this.resumeFn?.() }

  /** @internal end the try: undici errors it (onError), which ends it in the try handler. */
  cut (err: Error): void {
    if (this.mode === DONE) return
    const abort = this.abortFn
    this.abortFn = undefined
    abort?.(err)
  }
}

/** A streamed response body: undici pushes, Fastify pipes it to the client; destroyed early, it ends the try. */
class BodyStream extends Readable {
  private readonly sink: ResponseSink

  constructor (sink: ResponseSink) {
    super()
    this.sink = sink
  }

  override _read (): void { this.sink.more() }

  override _destroy (err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.readableEnded) this.sink.cut(err ?? new errors.RequestAbortedError())
    callback(err)
  }
}
