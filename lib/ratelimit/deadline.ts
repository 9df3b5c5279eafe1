// A hard deadline on one store call: a timer race, since a client's own timeout misses a silent Redis on Cluster.
// It measures Redis, not our own event loop: the loop's stalls do not count, and the poll phase reads any reply
// already waiting in the socket before a call is declared late.
import { GatewayError } from '../errors.js'

/** Why a store call failed: `timeout` (no answer by the deadline) or `failed` (Redis answered with an error, or the connection is gone). */
export class RateLimitStoreError extends GatewayError {
  readonly kind: 'timeout' | 'failed'
  /** A timeout: ms actually waited (our loop's stalls included). */
  readonly waitedMs: number | undefined
  constructor (kind: 'timeout' | 'failed', detail: string, cause?: unknown, waitedMs?: number) {
    super(kind === 'timeout' ? 'RATE_LIMIT_STORE_TIMEOUT' : 'RATE_LIMIT_STORE_FAILED', detail, { cause })
    this.name = 'RateLimitStoreError'
    this.kind = kind
    this.waitedMs = waitedMs
  }
}

/** Where a Deadline reads the time (ms, monotonic) and sets its timers: the real ones, or a test's fake clock. */
export interface TimerSource {
  now (): number
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
  setImmediate (fn: () => void): unknown
  clearImmediate (handle: unknown): void
}

/** performance.now and Node's timers. */
export const realTimers: TimerSource = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) },
  setImmediate: (fn) => setImmediate(fn),
  clearImmediate: (h) => { clearImmediate(h as NodeJS.Immediate) },
}

/** A deadline stretches for this process's stalls up to 4x its length and by 150 ms at most: a hung Redis still fails fast. */
export function deadlineCap (ms: number): number {
  return Math.min(ms * 4, ms + 150)
}
/** ms a timer may fire past its time before the delay counts as a stall of this process. */
const STALL_TOLERANCE = 2

/**
 * Calls `onExpire(waitedMs)` once `ms` of time in which this process ran on time has passed (a period whose timer
 * fired late is not counted), at most
 * deadlineCap(ms) after the start; always after a poll phase, so a reply already read settles first.
 * Not unref'd: a caller awaiting the answer must get one even if nothing else keeps the process up.
 */
export class Deadline {
  readonly #ms: number
  readonly #cap: number
  readonly #timers: TimerSource
  readonly #start: number
  readonly #onExpire: (waitedMs: number) => void
  #planned: number
  /** When the current timer was set. */
  #armed: number
  #stalled = 0
  #timer: unknown
  #immediate: unknown

  constructor (ms: number, onExpire: (waitedMs: number) => void, timers: TimerSource = realTimers) {
    this.#ms = ms
    this.#cap = deadlineCap(ms)
    this.#timers = timers
    this.#start = timers.now()
    this.#onExpire = onExpire
    this.#planned = this.#start + ms
    this.#armed = this.#start
    this.#timer = timers.setTimeout(this.#fire, ms)
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    const now = this.#timers.now()
    // a timer that fires late means this process was starved (its loop busy, or the CPU taken by others): that
    // whole period is not charged to Redis, which shares the machine and was likely starved too
    if (now - this.#planned > STALL_TOLERANCE) this.#stalled += now - this.#armed
    const waited = now - this.#start
    const charged = waited - this.#stalled
    if (charged < this.#ms && waited < this.#cap) {
      const left = Math.max(1, Math.min(this.#ms - charged, this.#cap - waited))
      this.#planned = now + left
      this.#armed = now
      this.#timer = this.#timers.setTimeout(this.#fire, left)
      return
    }
    // the poll phase first: a reply that came in while the loop was busy settles before we call it late
    this.#immediate = this.#timers.setImmediate(() => {
      this.#immediate = undefined
      this.#onExpire(this.#timers.now() - this.#start)
    })
  }

  cancel (): void {
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer)
    if (this.#immediate !== undefined) this.#timers.clearImmediate(this.#immediate)
    this.#timer = undefined
    this.#immediate = undefined
  }
}

/**
 * Settle with `work`, or reject with a `timeout` RateLimitStoreError once the Deadline of `ms` expires, whichever comes first.
 * The loser is absorbed: a late reply or late error of `work` settles nothing and is never unhandled.
 */
export function withDeadline<T> (work: Promise<T>, ms: number, timers: TimerSource = realTimers): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const deadline = new Deadline(ms, (waited) => { reject(new RateLimitStoreError('timeout', String(ms), undefined, waited)) }, timers)
    work.then((v) => {
      deadline.cancel()
      resolve(v)
    }, (err: unknown) => {
      deadline.cancel()
      reject(err instanceof RateLimitStoreError ? err : new RateLimitStoreError('failed', (err as Error)?.message ?? String(err), err))
    })
  })
}
