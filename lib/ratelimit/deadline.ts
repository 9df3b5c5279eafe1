// A hard deadline on one store call: a timer race, since a client's own timeout misses a silent Redis on Cluster.
// It measures Redis, not our own event loop: this process's stalls (measured by a tick, StallMeter) do not count, and
// a call is declared late only after a turn of the loop that ran on time, whose poll phase read any reply waiting.
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
/** ms a tick may come past its time before the delay counts as a stall of this process. */
const STALL_TOLERANCE = 2
/** ms between two ticks of a StallMeter. */
export const TICK_MS = 5

/**
 * This process's stalls, measured by a tick every TICK_MS while some deadline runs: a tick that comes late (the loop
 * busy, or the CPU taken by other processes) adds its lateness. A deadline's own timer cannot see a stall that ends
 * before it is due, and on a starved machine Redis, which shares it, is starved in the same periods.
 * One per TimerSource; the tick is unref'd and stops on the first tick with no deadline running.
 */
export class StallMeter {
  readonly #timers: TimerSource
  #total = 0
  #last = 0
  #ticking = false
  /** Deadlines running. */
  #users = 0

  constructor (timers: TimerSource) {
    this.#timers = timers
  }

  /** ms of stalls so far, the one going on now included (monotonic). */
  stalled (now: number): number {
    const late = now - this.#last - TICK_MS
    return this.#ticking && late > STALL_TOLERANCE ? this.#total + late : this.#total
  }

  acquire (now: number): void {
    this.#users++
    if (this.#ticking) return
    this.#ticking = true
    this.#last = now
    this.#arm()
  }

  release (): void {
    this.#users--
  }

  #arm (): void {
    const h = this.#timers.setTimeout(this.#tick, TICK_MS) as { unref?: () => void }
    h.unref?.()
  }

  readonly #tick = (): void => {
    const now = this.#timers.now()
    const late = now - this.#last - TICK_MS
    if (late > STALL_TOLERANCE) this.#total += late
    this.#last = now
    if (this.#users > 0) this.#arm()
    else this.#ticking = false
  }
}

const meters = new WeakMap<TimerSource, StallMeter>()
/** The StallMeter of a TimerSource. */
export function stallMeter (timers: TimerSource): StallMeter {
  let m = meters.get(timers)
  if (m === undefined) {
    m = new StallMeter(timers)
    meters.set(timers, m)
  }
  return m
}

/**
 * Calls `onExpire(waitedMs)` once `ms` of time in which this process ran on time has passed (its stalls, measured by
 * the StallMeter, are not counted), and only after a turn of the event loop that ran on time found no answer.
 * When the time is up it looks in the next check phase (setImmediate), after a poll phase has read what came in: if
 * that turn ran long (the immediate came late: this loop busy, or this process starved), an answer that came during
 * it is still unread, so the turn's time is not charged and it looks again later. A late loop never turns a timely
 * answer into a timeout. The stretch stops at deadlineCap(ms) from the start; past it, one more turn at most.
 * Not unref'd: a caller awaiting the answer must get one even if nothing else keeps the process up.
 */
export class Deadline {
  readonly #ms: number
  readonly #cap: number
  readonly #timers: TimerSource
  readonly #meter: StallMeter
  readonly #start: number
  /** The meter's stalls at the start. */
  readonly #base: number
  readonly #onExpire: (waitedMs: number) => void
  #timer: unknown
  #immediate: unknown
  /** When the pending immediate was asked for: it runs after the next poll phase. */
  #asked = 0
  /** Past the cap, the one more turn was given. */
  #last = false
  #done = false

  constructor (ms: number, onExpire: (waitedMs: number) => void, timers: TimerSource = realTimers) {
    this.#ms = ms
    this.#cap = deadlineCap(ms)
    this.#timers = timers
    this.#meter = stallMeter(timers)
    this.#start = timers.now()
    this.#meter.acquire(this.#start)
    this.#base = this.#meter.stalled(this.#start)
    this.#onExpire = onExpire
    this.#timer = timers.setTimeout(this.#fire, ms)
  }

  /** ms waited so far that count against the store (this process's stalls left out). */
  charged (now = this.#timers.now()): number {
    return now - this.#start - (this.#meter.stalled(now) - this.#base)
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    const now = this.#timers.now()
    if (this.#rearm(now)) return
    // the poll phase first: a reply that came in while the loop was busy settles before we call it late
    this.#ask(now)
  }

  /** Time left to charge, under the cap: set the timer for it. */
  #rearm (now: number): boolean {
    const waited = now - this.#start
    const charged = this.charged(now)
    if (charged >= this.#ms || waited >= this.#cap) return false
    this.#timer = this.#timers.setTimeout(this.#fire, Math.max(1, Math.min(this.#ms - charged, this.#cap - waited)))
    return true
  }

  #ask (now: number): void {
    this.#asked = now
    this.#immediate = this.#timers.setImmediate(this.#check)
  }

  readonly #check = (): void => {
    this.#immediate = undefined
    const now = this.#timers.now()
    if (now - this.#asked > STALL_TOLERANCE) {
      // the turn ran long: what came during it is unread until the next poll phase
      if (now - this.#start < this.#cap) {
        if (!this.#rearm(now)) this.#ask(now)
        return
      }
      if (!this.#last) {
        this.#last = true
        this.#ask(now)
        return
      }
    }
    this.#finish()
    this.#onExpire(now - this.#start)
  }

  #finish (): void {
    if (this.#done) return
    this.#done = true
    this.#meter.release()
  }

  cancel (): void {
    this.#finish()
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
