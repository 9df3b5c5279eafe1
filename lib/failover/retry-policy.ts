import { Backoff, parseRetryAfter, type BackoffOptions } from './backoff.js'
import type { RetryReason } from './events.js'
import type { RetryBudget } from './retry-budget.js'
import { isIdempotent } from '../routes/methods.js'

export { classifyError, type ErrorClass } from './classify-error.js'

/** A retry condition: a failure class ('connect_failure' is the config's name for 'connect'), a status, or an inclusive status range. */
export type RetryOnItem = 'connect' | 'connect_failure' | 'reset' | 'timeout' | number | readonly [number, number]

/** The config's normalized form (lib/config RetryOn), taken as is. */
export interface RetryOnSet {
  connectFailure: boolean
  reset: boolean
  timeout: boolean
  statuses: ReadonlyArray<readonly [number, number]>
}

export type RetryOn = readonly RetryOnItem[] | RetryOnSet

export interface RetryPolicyOptions extends BackoffOptions {
  /** Retries after the first try (so at most maxRetries + 1 tries). */
  maxRetries?: number
  /** Failures worth a retry: transport error classes and upstream statuses. */
  retryOn?: RetryOn
  /** Route opt-in: retry POST and PATCH even without an Idempotency-Key. */
  retryNonIdempotent?: boolean
  /** A body is replayed only if it was buffered and is at most this many bytes. */
  maxRetryBodySize?: number
  /** Deadline for the whole request, every try and delay included (ms); 0 = none. */
  timeout?: number
  /** Timeout of one try (ms); 0 = none. */
  perTryTimeout?: number
}

export const RETRY_DEFAULTS = {
  maxRetries: 2,
  retryOn: ['connect', 'reset', 'timeout', 502, 503, 504] as RetryOn,
  retryNonIdempotent: false,
  maxRetryBodySize: 64 * 1024,
  timeout: 0,
  perTryTimeout: 0,
}

export const IDEMPOTENCY_KEY_HEADER = 'idempotency-key'

/** One failed try, as the data path saw it. The caller may reuse the object between requests. */
export interface FailedTry {
  method: string
  /** Retries already made for this request: 0 when the first try failed. */
  retries: number
  /** classifyError(err) for a transport error, or the response status. */
  reason: RetryReason
  /** The request carries an Idempotency-Key header. */
  idempotencyKey: boolean
  /** The body can be sent again: there is none, or it is held in memory (false for a stream). */
  bodyBuffered: boolean
  /** Bytes of buffered body (0 for none). */
  bodySize: number
  /** Response headers already went to the client. */
  headersSent: boolean
  /** Epoch-ms when the client request started (deadline origin) and now. */
  startedAt: number
  now: number
  /** The failed response's Retry-After header, if any. */
  retryAfter?: string | readonly string[] | null
}

export type NoRetryReason =
  | 'headers_sent' | 'not_retryable' | 'max_retries' | 'method' | 'body' | 'retry_after' | 'deadline' | 'budget'

export type RetryDecision =
  | { retry: true, delayMs: number }
  | { retry: false, why: NoRetryReason }

// refusals are shared constants: deciding "no" allocates nothing
const NO: { [K in NoRetryReason]: { retry: false, why: K } } = {
  headers_sent: { retry: false, why: 'headers_sent' },
  not_retryable: { retry: false, why: 'not_retryable' },
  max_retries: { retry: false, why: 'max_retries' },
  method: { retry: false, why: 'method' },
  body: { retry: false, why: 'body' },
  retry_after: { retry: false, why: 'retry_after' },
  deadline: { retry: false, why: 'deadline' },
  budget: { retry: false, why: 'budget' },
}

/** RFC 9110 §9.2.2 idempotent methods the gateway replays by default: lib/routes/methods.ts. */
export { isIdempotent }

/** Decides whether a failed try may be retried, and after how long. Pure: no I/O, no timers. */
export class RetryPolicy {
  readonly maxRetries: number
  readonly retryNonIdempotent: boolean
  readonly maxRetryBodySize: number
  readonly timeout: number
  readonly perTryTimeout: number
  readonly backoff: Backoff
  private readonly onConnect: boolean
  private readonly onReset: boolean
  private readonly onTimeout: boolean
  /** statuses[code] === 1 when retried: one array read per response */
  private readonly statuses = new Uint8Array(600)

  constructor (opts: RetryPolicyOptions = {}) {
    this.maxRetries = opts.maxRetries ?? RETRY_DEFAULTS.maxRetries
    this.retryNonIdempotent = opts.retryNonIdempotent ?? RETRY_DEFAULTS.retryNonIdempotent
    this.maxRetryBodySize = opts.maxRetryBodySize ?? RETRY_DEFAULTS.maxRetryBodySize
    this.timeout = opts.timeout ?? RETRY_DEFAULTS.timeout
    this.perTryTimeout = opts.perTryTimeout ?? RETRY_DEFAULTS.perTryTimeout
    const on = toSet(opts.retryOn ?? RETRY_DEFAULTS.retryOn)
    this.onConnect = on.connectFailure
    this.onReset = on.reset
    this.onTimeout = on.timeout
    for (const [lo, hi] of on.statuses) this.statuses.fill(1, Math.max(0, lo), Math.min(599, hi) + 1)
    this.backoff = new Backoff(opts)
  }

  /** Is this response status one to retry on? Cheap enough for every response. */
  retriesStatus (status: number): boolean { return this.statuses[status] === 1 }

  /** Is this failure (error class or status) one to retry on at all? */
  retriesOn (reason: RetryReason): boolean {
    switch (reason) {
      case 'connect': return this.onConnect
      case 'reset': return this.onReset
      case 'timeout': return this.onTimeout
      case 'other': return false
      default: return this.statuses[reason] === 1
    }
  }

  /** May this request be sent again? A connect failure never reached an upstream: any method. */
  mayReplay (method: string, idempotencyKey: boolean, reason: RetryReason): boolean {
    return reason === 'connect' || isIdempotent(method) || idempotencyKey || this.retryNonIdempotent
  }

  /**
   * The verdict for one failed try. Checks, cheapest and most final first; the budget
   * (optional) last, so only retries refused for budget alone count as exhausted.
   * On `retry: true` with a budget, the caller holds a slot: `budget.release()` when the retry ends.
   */
  decide (f: FailedTry, budget?: RetryBudget): RetryDecision {
    if (f.headersSent) return NO.headers_sent
    if (!this.retriesOn(f.reason)) return NO.not_retryable
    if (f.retries >= this.maxRetries) return NO.max_retries
    if (!this.mayReplay(f.method, f.idempotencyKey, f.reason)) return NO.method
    if (!f.bodyBuffered || f.bodySize > this.maxRetryBodySize) return NO.body
    const retryAfterMs = f.retryAfter == null ? undefined : parseRetryAfter(f.retryAfter, f.now)
    // the upstream asks for a longer pause than we hold a client for: its answer stands
    if (retryAfterMs !== undefined && retryAfterMs > this.backoff.maxRetryAfter) return NO.retry_after
    const delayMs = this.backoff.delay(f.retries, f.reason, retryAfterMs)
    // the retry must be able to start before the deadline
    if (this.timeout > 0 && f.now + delayMs >= f.startedAt + this.timeout) return NO.deadline
    if (budget !== undefined && !budget.tryAcquire()) return NO.budget
    return { retry: true, delayMs }
  }

  /** Timeout for a try starting at `now` (ms): perTryTimeout, cut to what is left of the deadline; Infinity = none. */
  tryTimeout (startedAt: number, now: number): number {
    const perTry = this.perTryTimeout > 0 ? this.perTryTimeout : Infinity
    const left = this.timeout > 0 ? Math.max(0, startedAt + this.timeout - now) : Infinity
    return Math.min(perTry, left)
  }
}

function toSet (r: RetryOn): RetryOnSet {
  if (!Array.isArray(r)) return r as RetryOnSet
  const set = { connectFailure: false, reset: false, timeout: false, statuses: [] as Array<readonly [number, number]> }
  for (const it of r as readonly RetryOnItem[]) {
    if (it === 'connect' || it === 'connect_failure') set.connectFailure = true
    else if (it === 'reset') set.reset = true
    else if (it === 'timeout') set.timeout = true
    else if (typeof it === 'number') set.statuses.push([it, it])
    else set.statuses.push(it)
  }
  return set
}
