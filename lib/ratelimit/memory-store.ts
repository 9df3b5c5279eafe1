// The in-memory twins behind the store contract: single-node mode and the `local` outage fallback.
import { ALGORITHMS, type Algorithm, type Decision, type LimitRule, type RateLimitStore } from './types.js'
import { EPOCH_MS, toDecision, type Grant, type GrantSource } from './grant.js'
import { Slot, TWINS } from './algorithms/index.js'
import { ExpiringMap } from './expiring-map.js'

export interface MemoryStoreOptions {
  /** Clock in Unix ms (default Date.now); tests inject their own. */
  now?: () => number
  /** Width of an expiry-wheel bucket and period of the sweep timer, ms (default 1000). */
  sweepInterval?: number
  /** Most expired keys looked at per map per sweep chunk before yielding to the event loop (default 5,000: ~1-2 ms). */
  sweepChunk?: number
}

export class MemoryStore implements RateLimitStore, GrantSource {
  readonly #now: () => number
  /** One map per algorithm: keys are the caller's strings as is (no suffix concatenated per request). */
  readonly #slots: Record<Algorithm, ExpiringMap<Slot>>
  readonly #chunk: number
  #timer: NodeJS.Timeout | undefined
  #resume: NodeJS.Immediate | undefined

  constructor (opts: MemoryStoreOptions = {}) {
    this.#now = opts.now ?? Date.now
    const tick = opts.sweepInterval ?? 1000
    this.#chunk = opts.sweepChunk ?? 5000
    const now = this.#clock()
    this.#slots = { fixed_window: new ExpiringMap(tick, now), sliding_window: new ExpiringMap(tick, now), token_bucket: new ExpiringMap(tick, now) }
    this.#timer = setInterval(() => { this.#sweepSoon() }, tick)
    this.#timer.unref()
  }

  /** Live keys (each key under each algorithm counts once). */
  get size (): number {
    return this.#slots.fixed_window.size + this.#slots.sliding_window.size + this.#slots.token_bucket.size
  }

  consume (key: string, rule: LimitRule, cost: number): Promise<Decision> {
    return Promise.resolve(this.consumeSync(key, rule, cost))
  }

  /** consume() without the promise, for callers on the hot path. */
  consumeSync (key: string, rule: LimitRule, cost: number): Decision {
    return toDecision(this.takeSync(key, rule, cost, cost), rule.limit)
  }

  /** The store contract's synchronous path: memory always decides now. */
  consumeNow (key: string, rule: LimitRule, cost: number): Decision {
    return this.consumeSync(key, rule, cost)
  }

  take (key: string, rule: LimitRule, want: number, min: number): Promise<Grant> {
    return Promise.resolve(this.takeSync(key, rule, want, min))
  }

  takeSync (key: string, rule: LimitRule, want: number, min: number): Grant {
    const now = this.#clock()
    const slots = this.#slots[rule.algorithm]
    let slot = slots.get(key, now)
    const fresh = slot === undefined
    if (slot === undefined) slot = new Slot()
    const g = TWINS[rule.algorithm].step(slot, now, rule.limit, rule.window, want, min)
    if (g.granted > 0) {
      // Only a spend creates or extends state, as in Redis (a refusal writes nothing)
      if (fresh) slots.set(key, slot)
      else slots.schedule(key, slot)
    }
    return g
  }

  refund (key: string, rule: LimitRule, units: number, epoch: number): Promise<void> {
    const now = this.#clock()
    const slot = this.#slots[rule.algorithm].get(key, now)
    if (slot !== undefined && units > 0) TWINS[rule.algorithm].refund(slot, now, rule.limit, rule.window, units, epoch)
    return Promise.resolve()
  }

  /** Drop expired keys now (the timer does it every sweepInterval); true when none are left to look at. */
  sweep (budget = Infinity): boolean {
    const now = this.#clock()
    let done = true
    for (const algorithm of ALGORITHMS) done = this.#slots[algorithm].sweep(now, budget) && done
    return done
  }

  /** Forget every key. */
  clear (): void {
    for (const algorithm of ALGORITHMS) this.#slots[algorithm].clear()
  }

  async close (): Promise<void> {
    clearInterval(this.#timer)
    if (this.#resume !== undefined) clearImmediate(this.#resume)
    this.#timer = undefined
    this.#resume = undefined
    for (const algorithm of ALGORITHMS) this.#slots[algorithm].clear()
  }

  #clock (): number {
    return this.#now() - EPOCH_MS
  }

  /** One chunk now; if more are due, the next chunk after pending I/O. */
  #sweepSoon (): void {
    this.#resume = undefined
    if (this.#timer === undefined || this.sweep(this.#chunk)) return
    this.#resume = setImmediate(() => { this.#sweepSoon() })
    this.#resume.unref()
  }
}
