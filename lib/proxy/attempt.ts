import type { Action } from '../failover/decide.js'
import type { BudgetLease } from '../failover/budget-lease.js'
import type { Target } from '../upstream/target.js'
import type { TryObserver } from '../upstream/registry.js'
import type { UpstreamFailover } from './failover-registry.js'
import type { ClientResponse } from './passthrough.js'

const NO_OBSERVERS: readonly TryObserver[] = []

/** What the proxy reads of the client's request (a node:http IncomingMessage) when a try fails. */
export interface ClientRequestState {
  readonly complete: boolean
  readonly destroyed: boolean
}

/** What happens to a try's response once its headers are in: an Action (pass it, or drop it and retry / fall back), or just drop it (a lost hedge, a failure while another try runs). */
export type Fate = Action | { readonly kind: 'drop' }
export const PASSES: Fate = { kind: 'pass' }
export const DROPPED: Fate = { kind: 'drop' }

/** Who started a try (lib/proxy/request-run.ts), told by the try handler what happens to it. */
export interface TryOwner {
  /** Final response headers are in (statusCode, headersMs set): decide the try's fate. reply-from's callbacks for it run right after, synchronously. */
  tryHeaders (a: Attempt): void
  /** ...and that synchronous chain is over. */
  tryHeadersDone (a: Attempt): void
  /** The try failed before response headers (a.error); called on a later microtask, after the try ended. */
  tryFailed (a: Attempt): void
}

/** undici's abort for one request (handed to the handler's onConnect). */
export type AbortFn = (reason?: Error) => void

/** One try of a proxied request against one target: what it was sent with, how it went, and how to cancel it. */
export class Attempt {
  target: Target
  /** performance.now() when the try was dispatched. */
  startedAt = 0
  /** The request target sent upstream exactly as the client sent it (reply-from's re-parsed URL is not used). */
  path: string | undefined = undefined
  /** ms from dispatch to response headers; -1 until they arrive. */
  headersMs = -1
  statusCode = 0
  /** The response's raw header list (undici's), kept to read Retry-After from only when the status is retried. */
  rawHeaders: Buffer[] | string[] | undefined = undefined
  error: Error | undefined = undefined
  ended = false
  headersTimeout: number
  bodyTimeout: number
  /** The request run that started the try; cleared when the try ends or the run closes. */
  owner: TryOwner | undefined
  /** Circuit-breaker ticket of this try (-1: no breaker). */
  ticket = -1
  /** The retry-budget slot this try runs on (a retry or a hedge): released when it ends. */
  lease: BudgetLease | undefined = undefined
  /** What the proxy does with this try's response: see Fate. */
  fate: Fate = PASSES
  /** Budget and breakers of the upstream this try went to. */
  failover: UpstreamFailover | undefined = undefined

  /** The upstream's try observers (passive health...), told when this try starts and ends. */
  observers: readonly TryObserver[] = NO_OBSERVERS

  aborted = false
  /** The try failed because of the client (it left mid-body, or sent what undici refuses): never the target's fault. */
  clientFault = false
  /** The target's response head passed proxy.maxHeaderSize: answered 502, never retried, and (as a client fault) never the target's failure. */
  headersTooLarge = false
  /** The client's request (its body feeds this try): tells a client-caused failure from the target's. */
  client: ClientRequestState | undefined = undefined
  /** The client's response: 103 Early Hints and trailers of the try it passes go there (lib/proxy/passthrough.ts). */
  response: ClientResponse | undefined = undefined
  /** Why the try was cancelled (abort or expire), passed to undici's abort. */
  reason: Error | undefined = undefined
  /** The per-try headers deadline (only on routes with failover.perTryTimeout or timeout). */
  deadline: unknown = undefined
  private abortFn: AbortFn | undefined = undefined

  constructor (target: Target, headersTimeout: number, bodyTimeout: number, owner?: TryOwner) {
    this.target = target
    this.headersTimeout = headersTimeout
    this.bodyTimeout = bodyTimeout
    this.owner = owner
  }

  /** The request reached undici's connection: `abort` cancels it from now on (and at once if the try was cancelled before). */
  connected (abort: AbortFn): void {
    if (this.ended) return
    if (this.reason !== undefined) abort(this.reason)
    else this.abortFn = abort
  }

  /** Abort the upstream request (client went away, hedge lost, deadline passed). */
  abort (reason: Error): void {
    if (this.aborted || this.ended) return
    this.aborted = true
    this.cancel(reason)
  }

  /**
   * The try's own headers deadline passed: the upstream request ends with `reason` (a timeout, retried as one).
   * Unlike abort() the try stays a failure of its target. Needed because undici's parser timer ticks every
   * ~0.5 s, which turns a 300 ms per-try timeout into 500-1000 ms.
   */
  expire (reason: Error): void {
    if (this.aborted || this.ended || this.headersMs >= 0) return
    this.cancel(reason)
  }

  private cancel (reason: Error): void {
    this.reason = reason
    const fn = this.abortFn
    this.abortFn = undefined
    if (fn !== undefined) fn(reason)
  }

  notifyStart (now: number): void {
    const obs = this.observers
    for (let i = 0; i < obs.length; i++) obs[i].onTryStart?.(this.target, now)
  }

  notifyEnd (now: number): void {
    const obs = this.observers
    if (obs.length === 0) return
    const result = { statusCode: this.statusCode, error: this.error, aborted: this.aborted || this.clientFault || this.headersTooLarge }
    for (let i = 0; i < obs.length; i++) obs[i].onTryEnd?.(this.target, result, now)
  }

  /** The response's Retry-After header, if any (read from the raw list: only asked for a retried status). */
  retryAfter (): string | undefined {
    const raw = this.rawHeaders
    if (raw === undefined) return undefined
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]
      if (name.length === 11 && name.toString().toLowerCase() === 'retry-after') return raw[i + 1].toString()
    }
    return undefined
  }

  /** Drop every link to the request this try served (called once it ended). */
  release (): void {
    this.owner = undefined
    this.abortFn = undefined
    this.reason = undefined
    this.failover = undefined
    this.client = undefined
    this.response = undefined
    this.lease = undefined
    this.rawHeaders = undefined
    this.observers = NO_OBSERVERS
  }
}
