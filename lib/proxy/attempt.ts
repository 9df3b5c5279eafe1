import type { Target } from '../upstream/target.js'
import type { TryObserver, TryResult } from '../upstream/registry.js'
import type { UpstreamFailover } from './failover-registry.js'

const NO_OBSERVERS: readonly TryObserver[] = []
// Reused per call: observers read it synchronously and keep nothing.
const result: TryResult = { statusCode: 0, error: undefined, aborted: false }

/** What the proxy reads of the client's request (a node:http IncomingMessage) when a try fails. */
export interface ClientRequestState {
  readonly complete: boolean
  readonly destroyed: boolean
}

/** The response callback a dispatcher owes for this try (reply-from's), held while the try runs. */
export type TryCallback = (err: Error | null, data?: unknown) => void

/** What happens to a try's response once its headers are in: sent to the client... */
export const PASS = 0
/** ...dropped (a hedge that lost, a failure while another try runs)... */
export const DROP = 1
/** ...or dropped, and the next try starts after retryDelay. */
export const RETRY = 2
/** ...or dropped, and the route's static fallbackResponse answers. */
export const FALLBACK = 3
export type Verdict = typeof PASS | typeof DROP | typeof RETRY | typeof FALLBACK

/**
 * One try of a proxied request against one target. It is also the request's
 * abort signal: undici accepts any object with `on`/`once`/`removeListener`, so
 * cancelling needs no AbortController per request.
 */
export class Attempt {
  target: Target
  /** performance.now() when the try was dispatched. */
  startedAt = 0
  /** The request target sent upstream exactly as the client sent it (reply-from's re-parsed URL is not used). */
  path: string | undefined = undefined
  /** ms from dispatch to response headers; -1 until they arrive. */
  headersMs = -1
  statusCode = 0
  error: Error | undefined = undefined
  ended = false
  headersTimeout: number
  bodyTimeout: number
  /** Free slot for the layer that started the try (its request state); cleared when the try ends. */
  owner: unknown
  /** Set by the dispatcher while the try runs: who to tell, and the caller's callback. */
  observer: unknown = undefined
  callback: TryCallback | undefined = undefined
  /** Circuit-breaker ticket of this try (-1: no breaker). */
  ticket = -1
  /** This try holds a retry-budget slot (a retry or a hedge): released when it ends. */
  slot = false
  /** What the proxy does with this try's response: see Verdict. */
  verdict: Verdict = PASS
  /** Backoff before the next try when verdict is RETRY (ms). */
  retryDelay = 0
  /** The response's Retry-After header, if any. */
  retryAfter: string | string[] | undefined = undefined
  /** Budget and breakers of the upstream this try went to. */
  failover: UpstreamFailover | undefined = undefined

  /** The upstream's try observers (passive health...), told when this try starts and ends. */
  observers: readonly TryObserver[] = NO_OBSERVERS

  aborted = false
  /** The try failed because of the client (it left mid-body, or sent what undici refuses): never the target's fault. */
  clientFault = false
  /** The client's request (its body feeds this try): tells a client-caused failure from the target's. */
  client: ClientRequestState | undefined = undefined
  reason: unknown = undefined
  /** The per-try headers deadline (only on routes with failover.perTryTimeout or timeout). */
  deadline: NodeJS.Timeout | undefined = undefined
  private abortListener: (() => void) | undefined = undefined

  constructor (target: Target, headersTimeout: number, bodyTimeout: number, owner?: unknown) {
    this.target = target
    this.headersTimeout = headersTimeout
    this.bodyTimeout = bodyTimeout
    this.owner = owner
  }

  // --- the EventEmitter subset undici's addAbortListener uses ---
  on (event: string, fn: () => void): this {
    if (event === 'abort') this.abortListener = fn
    return this
  }

  once (event: string, fn: () => void): this { return this.on(event, fn) }

  removeListener (event: string, fn: () => void): this {
    if (event === 'abort' && this.abortListener === fn) this.abortListener = undefined
    return this
  }

  /** Abort the upstream request (client went away, hedge lost, deadline passed). */
  abort (reason?: Error): void {
    if (this.aborted || this.ended) return
    this.aborted = true
    this.reason = reason
    const fn = this.abortListener
    this.abortListener = undefined
    if (fn !== undefined) fn()
  }

  /**
   * The try's own headers deadline passed: the upstream request ends with `reason` (a timeout, retried as one).
   * Unlike abort() the try stays a failure of its target. Needed because undici's parser timer ticks every
   * ~0.5 s, which turns a 300 ms per-try timeout into 500-1000 ms.
   */
  expire (reason: Error): void {
    if (this.aborted || this.ended || this.headersMs >= 0) return
    this.reason = reason
    const fn = this.abortListener
    this.abortListener = undefined
    if (fn !== undefined) fn()
  }

  notifyStart (now: number): void {
    const obs = this.observers
    for (let i = 0; i < obs.length; i++) obs[i].onTryStart?.(this.target, now)
  }

  notifyEnd (now: number): void {
    const obs = this.observers
    if (obs.length === 0) return
    result.statusCode = this.statusCode
    result.error = this.error
    result.aborted = this.aborted || this.clientFault
    for (let i = 0; i < obs.length; i++) obs[i].onTryEnd?.(this.target, result, now)
  }

  /** Drop every link to the request this try served (called once it ended). */
  release (): void {
    if (this.deadline !== undefined) { clearTimeout(this.deadline); this.deadline = undefined }
    this.owner = undefined
    this.observer = undefined
    this.callback = undefined
    this.abortListener = undefined
    this.reason = undefined
    this.failover = undefined
    this.client = undefined
    this.observers = NO_OBSERVERS
  }
}
