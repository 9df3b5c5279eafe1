// Per-route and per-request state of the proxy data path, and the structural request/reply
// types it works on (Fastify's objects satisfy them; lib/ never imports fastify).
import type { ServerResponse } from 'node:http'
import type { Strategy } from '../balancers/types.js'
import type { RouteCounters } from '../metrics/proxy-metrics.js'
import type { UpstreamEntry } from '../upstream/registry.js'
import type { Target } from '../upstream/target.js'
import type { Attempt } from './attempt.js'
import type { ClientSocket } from './headers.js'
import type { RouteFailover, UpstreamFailover } from './failover-registry.js'
import type { HashKeyFn } from './hash-key.js'

/** What the proxy reads of a request (a FastifyRequest). */
export interface ProxyRequest {
  readonly method: string
  readonly url: string
  readonly ip: string
  readonly protocol: string
  readonly headers: Record<string, string | string[] | undefined>
  readonly body?: unknown
  /** The Node request: its `url` is what reply-from builds the upstream path from. */
  readonly raw?: { readonly url?: string, readonly complete: boolean, readonly destroyed: boolean, readonly socket?: ClientSocket | null }
}

/** What the proxy does with a reply (a FastifyReply with @fastify/reply-from's `from`). */
export interface ProxyReply {
  readonly request: ProxyRequest
  readonly raw: ServerResponse
  readonly sent: boolean
  readonly elapsedTime: number
  readonly log: { warn (obj: object, msg: string): void }
  code (statusCode: number): unknown
  type (contentType: string): unknown
  headers (values: Record<string, string>): unknown
  removeHeader (name: string): unknown
  getHeader (name: string): unknown
  getHeaders (): Record<string, unknown>
  send (payload?: unknown): unknown
  from (source?: string, opts?: never): unknown
}

/** Everything a route resolved once: the request path only reads it. */
export interface RoutePlan {
  upstreamName: string
  strategy: Strategy | undefined
  hashKey: HashKeyFn | undefined
  label: string
  entry: UpstreamEntry | undefined
  generation: number
  metrics: RouteCounters | undefined
  failover: RouteFailover
  /** The path sent upstream from the request URL (stripPrefix/rewritePrefix); undefined: the URL's path as is. */
  upstreamPath?: ((url: string) => string) | undefined
  /** Send the client's Host upstream. */
  preserveHost?: boolean
}

// request body kinds: none (replayable), buffered (replayable), streamed (sent once)
export const NO_BODY = 0
export const BUFFERED = 1
export const STREAMED = 2

/**
 * Per-request proxy state; one small object per proxied request. When the client's response
 * closes, every link it holds to the request graph (reply, tries) is cleared, so nothing of a
 * finished request stays reachable from state that may outlive it (a promoted or pretenured
 * object would otherwise keep the rest of the request alive through every scavenge).
 */
export class ProxyState {
  plan: RoutePlan
  reply: ProxyReply | undefined
  current: Attempt | undefined = undefined
  /** A hedge in flight beside `current`. */
  hedge: Attempt | undefined = undefined
  /** The try whose response (or error) reply-from is handling now: set by the observer, read synchronously by the callbacks. */
  responding: Attempt | undefined = undefined
  /** Targets tried so far (a retry never picks them again); allocated on the first retry or refusal only. */
  tried: Target[] | undefined = undefined
  /** The first target tried, kept without an array (the common case: one try). */
  first: Target | undefined = undefined
  /** Tries started (hedges included). */
  tries = 0
  /** The upstream being tried (the primary, or the fallback pool) and its failover state. */
  entry: UpstreamEntry | undefined = undefined
  up: UpstreamFailover | undefined = undefined
  primaryUp: UpstreamFailover | undefined = undefined
  inFallback = false
  retries = 0
  /** The client left (or the deadline answered): nothing more is dispatched. */
  done = false
  /** A retry-budget slot taken by a retry decision, handed to the next try. */
  slotHeld = false
  /** Epoch-ms when proxying started: origin of the overall deadline. */
  startedAt = 0
  bodyKind = NO_BODY
  bodySize = 0
  fromOpts: object
  /** Backoff or hedge timer, and the overall deadline timer. */
  timer: NodeJS.Timeout | undefined = undefined
  deadline: NodeJS.Timeout | undefined = undefined

  constructor (plan: RoutePlan, reply: ProxyReply, fromOpts: object) {
    this.plan = plan
    this.reply = reply
    this.fromOpts = fromOpts
  }

  /** Record a target as tried by this request. */
  markTried (t: Target): void {
    if (this.tried !== undefined) this.tried.push(t)
    else if (this.first === undefined) this.first = t
    else this.tried = [this.first, t]
  }

  /** Targets tried so far, as the balancers' `tried` (undefined: none). */
  triedList (): readonly Target[] | undefined {
    if (this.tried !== undefined) return this.tried
    if (this.first === undefined) return undefined
    this.tried = [this.first]
    return this.tried
  }

  hasTried (t: Target): boolean {
    return this.tried !== undefined ? this.tried.includes(t) : this.first === t
  }
}
