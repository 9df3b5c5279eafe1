import type { RetryReason } from './events.js'

export interface BackoffOptions {
  /** Base delay of the jittered exponential (ms). Envoy's retry back-off default: 25 ms. */
  retryDelay?: number
  /** Cap of the exponential (ms). Default max(250, 10 × retryDelay), Envoy: max_interval = 10 × base. */
  maxRetryDelay?: number
  /** Base delay after a connect failure (ms): 0, the retry goes to another target at once. */
  connectRetryDelay?: number
  /** Longest `Retry-After` honoured (ms). RetryPolicy does not retry past it; delay() clamps to it. */
  maxRetryAfter?: number
  /** Uniform [0, 1) source; injectable for tests. */
  random?: () => number
}

export const BACKOFF_DEFAULTS = {
  retryDelay: 25,
  maxRetryDelay: 250,
  connectRetryDelay: 0,
  maxRetryAfter: 1000,
} as const

/**
 * Full jitter, AWS Architecture Blog "Exponential Backoff and Jitter" (2015):
 * delay = random(0, min(cap, base × 2^attempt)). Units: ms; `attempt` counts from 0.
 */
export function fullJitter (attempt: number, base: number, cap: number, random: () => number = Math.random): number {
  if (!(base > 0) || !(cap > 0)) return 0
  // 2 ** attempt overflows to Infinity for huge attempts; min() keeps it at cap
  return random() * Math.min(cap, base * 2 ** Math.max(0, attempt))
}

const DELAY_SECONDS = /^\s*(\d+)\s*$/
// all three HTTP-date forms (IMF-fixdate, RFC 850, asctime) open with a day name; Date.parse alone takes '-5'
const HTTP_DATE = /^\s*[A-Za-z]{3}/

/**
 * `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date.
 * Returns ms from `now` (0 for a date in the past), or undefined when absent or unparsable.
 */
export function parseRetryAfter (value: string | readonly string[] | null | undefined, now: number): number | undefined {
  const v = typeof value === 'string' ? value : value?.[0]
  if (v === undefined || v === '') return undefined
  const secs = DELAY_SECONDS.exec(v)
  if (secs !== null) return Number(secs[1]) * 1000
  const at = HTTP_DATE.test(v) ? Date.parse(v) : NaN
  if (Number.isNaN(at)) return undefined
  return Math.max(0, at - now)
}

/** Delay between tries, from the failure's reason and the upstream's `Retry-After`. */
export class Backoff {
  readonly retryDelay: number
  readonly maxRetryDelay: number
  readonly connectRetryDelay: number
  readonly maxRetryAfter: number
  private readonly random: () => number

  constructor (opts: BackoffOptions = {}) {
    this.retryDelay = opts.retryDelay ?? BACKOFF_DEFAULTS.retryDelay
    this.maxRetryDelay = opts.maxRetryDelay ?? Math.max(BACKOFF_DEFAULTS.maxRetryDelay, this.retryDelay * 10)
    this.connectRetryDelay = opts.connectRetryDelay ?? BACKOFF_DEFAULTS.connectRetryDelay
    this.maxRetryAfter = opts.maxRetryAfter ?? BACKOFF_DEFAULTS.maxRetryAfter
    this.random = opts.random ?? Math.random
  }

  /**
   * Ms to wait before retry number `attempt` (0-based). `retryAfterMs` (from parseRetryAfter)
   * raises the jittered delay, clamped to `maxRetryAfter`.
   */
  delay (attempt: number, reason: RetryReason, retryAfterMs?: number): number {
    const base = reason === 'connect' ? this.connectRetryDelay : this.retryDelay
    const jittered = fullJitter(attempt, base, this.maxRetryDelay, this.random)
    if (retryAfterMs === undefined) return jittered
    return Math.max(jittered, Math.min(retryAfterMs, this.maxRetryAfter))
  }
}
