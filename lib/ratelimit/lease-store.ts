// Lease mode: take a slice of a key's budget from the shared store in one call, spend it locally.
//
// Over-admission bound. A node takes a slice only when it holds fewer units than the request's cost,
// and asks for max(slice, cost) minus nothing held, so it holds at most max(slice, cost) unspent units of
// a key at any moment; every unit it admits was counted in Redis at most min(leaseTtl, window) earlier.
// Units counted in Redis but admitted later are the only excess, so against the exact algorithm over any
// span: admitted <= exact + nodes * max(slice, cost) (with cost <= slice: nodes * slice).
//   fixed_window: a lease ends with its window, timed from the moment its request was sent, so no unit
//     crosses a boundary: no over-admission at all (under-admission: slices left unused on other nodes).
//   sliding_window: estimate over admission times <= limit + nodes * slice (leaseTtl <= window keeps a
//     unit within the current or previous window).
//   token_bucket: in any span of d ms, admitted <= limit + d / T + nodes * slice.
// Unused units go back (refund) when a slice expires and on close(); a refund names the window it was
// taken in, so it never credits a later one. A fixed_window slice that ran to its window's end is not
// refunded (the window is gone).
// Requests arriving while a slice request is in flight wait for it; those it does not cover are decided
// exactly, one store call each (never a queue of slices): a burst costs at most two round trips.
// Prefetch (option; the plugin sets a quarter of the slice): once a spend leaves that many units or fewer,
// the next units are asked for in the background while the rest is spent, so a hot key's requests do not
// wait on the store.
// It asks for the slice minus the units held, so a node still holds at most one slice and the bound stands;
// units of another window (the boundary passed meanwhile) replace the old ones, which go back.
import { ALGORITHMS, type Algorithm, type Decision, type LimitRule, type RateLimitStore } from './types.js'
import type { GrantSource } from './grant.js'
import { ExpiringMap, type Expiring } from './expiring-map.js'
import { RateLimitStoreError, realTimers, withDeadline, type TimerSource } from './deadline.js'

export interface LeaseStoreOptions {
  /** Where slices come from: a RedisStore (tests also use a MemoryStore). Not closed by close(). */
  source: GrantSource & { readonly timeout?: number }
  /** Units per slice (default: rule.leaseSize, else max(1, floor(limit / 20)): 5% of the limit per node). */
  leaseSize?: number | ((rule: LimitRule) => number)
  /** Longest a node keeps a slice, ms (default 1000; never longer than the window). */
  leaseTtl?: number
  /** Longest a consume waits for a slice, ms (default: source.timeout, else 50). */
  timeout?: number
  /** Local clock in ms (default Date.now). */
  now?: () => number
  /** Where the deadlines of slice requests read time and set timers (default: performance.now and Node's timers). */
  timers?: TimerSource
  /**
   * Units left at which the next slice is fetched in the background: a number, a fraction of the slice
   * (0 < f < 1), or false (default: only when a request finds the slice short). Costs ~1 / (1 - f) calls per slice.
   */
  prefetch?: number | false
}

/** Default slice: 5% of the limit, so the over-admission bound is nodes * 5% of the limit. */
export function defaultLeaseSize (rule: LimitRule): number {
  return rule.leaseSize ?? Math.max(1, Math.floor(rule.limit / 20))
}

class Lease implements Expiring {
  /** Leased units not spent yet. */
  units = 0
  /** Window of the units, for refunds. */
  epoch = 0
  /** Local ms after which the units are void. */
  until = 0
  /** Local ms when the budget is full again, as the store last said; a refund is pointless after it. */
  resetAt = 0
  /** Store-wide units left at the last grant (RateLimit `remaining` is approximate in lease mode). */
  remaining = 0
  /** The store refused `refusedCost` or more units until this local ms. */
  refusedUntil = 0
  refusedCost = Infinity
  pending: Promise<void> | undefined = undefined
  expiresAt = 0
  bucket = -1
  constructor (readonly key: string, public rule: LimitRule) {}
}

const SWEEP_TICK = 100

export class LeaseStore implements RateLimitStore {
  readonly #source: GrantSource
  readonly #size: (rule: LimitRule) => number
  readonly #ttl: number
  readonly #timeout: number
  /** How long a lease with a slice request in flight must stay in the map: the longer of both deadlines. */
  readonly #hold: number
  readonly #now: () => number
  readonly #timers: TimerSource
  readonly #prefetch: number | false
  /** One map per algorithm, keyed by the caller's key as is. */
  readonly #leases: Record<Algorithm, ExpiringMap<Lease>>
  #timer: NodeJS.Timeout | undefined

  constructor (opts: LeaseStoreOptions) {
    this.#source = opts.source
    const size = opts.leaseSize
    this.#size = typeof size === 'function' ? size : size !== undefined ? (rule) => rule.leaseSize ?? size : defaultLeaseSize
    this.#ttl = opts.leaseTtl ?? 1000
    this.#timeout = opts.timeout ?? opts.source.timeout ?? 50
    this.#hold = Math.max(this.#timeout, opts.source.timeout ?? 0)
    this.#now = opts.now ?? Date.now
    this.#timers = opts.timers ?? realTimers
    this.#prefetch = opts.prefetch ?? false
    const now = this.#now()
    const map = (): ExpiringMap<Lease> => new ExpiringMap<Lease>(SWEEP_TICK, now, (_, lease) => { void this.#void(lease, this.#now()) })
    this.#leases = { fixed_window: map(), sliding_window: map(), token_bucket: map() }
    this.#timer = setInterval(() => {
      const at = this.#now()
      for (const algorithm of ALGORITHMS) this.#leases[algorithm].sweep(at, 20_000)
    }, SWEEP_TICK)
    this.#timer.unref()
  }

  /** Keys holding a lease (or a cached refusal). */
  get size (): number {
    return this.#leases.fixed_window.size + this.#leases.sliding_window.size + this.#leases.token_bucket.size
  }

  /** Which server holds `key`: the source's answer (a lease's units come from there). */
  shardOf (key: string): string {
    return this.#source.shardOf?.(key) ?? ''
  }

  consume (key: string, rule: LimitRule, cost: number): Promise<Decision> {
    const now = this.#now()
    const lease = this.#leases[rule.algorithm].get(key, now)
    const d = lease === undefined ? undefined : this.#local(lease, rule, cost, now)
    return d !== undefined ? Promise.resolve(d) : this.#consumeSlow(key, rule, cost, now, lease)
  }

  /** The decision from the lease alone (units left, or a cached refusal), or undefined when it takes a store call. */
  consumeNow (key: string, rule: LimitRule, cost: number): Decision | undefined {
    const now = this.#now()
    const lease = this.#leases[rule.algorithm].get(key, now)
    return lease === undefined ? undefined : this.#local(lease, rule, cost, now)
  }

  /** Fast path: no Redis call. */
  #local (lease: Lease, rule: LimitRule, cost: number, now: number): Decision | undefined {
    if (lease.until > now && lease.units >= cost) return this.#spend(lease, rule, cost, now)
    if (now < lease.refusedUntil && cost >= lease.refusedCost) return refused(lease, rule, now)
    return undefined
  }

  /** Stop the sweep and give every unused unit back (errors ignored: the window expires them anyway). */
  async close (): Promise<void> {
    clearInterval(this.#timer)
    this.#timer = undefined
    const now = this.#now()
    const refunds: Array<Promise<void>> = []
    for (const algorithm of ALGORITHMS) {
      for (const [, lease] of this.#leases[algorithm].entries()) {
        const p = this.#void(lease, now)
        if (p !== undefined) refunds.push(p)
      }
      this.#leases[algorithm].clear()
    }
    await Promise.all(refunds)
  }

  async #consumeSlow (key: string, rule: LimitRule, cost: number, start: number, lease: Lease | undefined): Promise<Decision> {
    const leases = this.#leases[rule.algorithm]
    if (lease === undefined) {
      lease = new Lease(key, rule)
      leases.set(key, lease)
    }
    lease.rule = rule
    const deadline = start + this.#timeout
    for (let round = 0; ; round++) {
      const now = this.#now()
      if (lease.until <= now) void this.#void(lease, now)
      if (lease.units >= cost) return this.#spend(lease, rule, cost, now)
      if (now < lease.refusedUntil && cost >= lease.refusedCost) return refused(lease, rule, now)
      if (now >= deadline) throw new RateLimitStoreError('timeout', String(this.#timeout))
      if (round > 0) {
        // The slice this request waited for did not cover it: one exact call, not a queue of slices
        return await this.#exact(lease, rule, cost, now, deadline)
      }
      // One slice request per key at a time: the bound counts one lease per node
      lease.pending ??= this.#refill(leases, lease, rule, cost, now)
      await withDeadline(lease.pending, deadline - now, this.#timers)
    }
  }

  async #exact (lease: Lease, rule: LimitRule, cost: number, sentAt: number, deadline: number): Promise<Decision> {
    const g = await withDeadline(this.#source.take(lease.key, rule, cost, cost), deadline - sentAt, this.#timers)
    if (!g.allowed) this.#refused(lease, g.retryAfterMs, g.resetMs, cost, sentAt)
    return { allowed: g.allowed, limit: rule.limit, remaining: g.remaining, resetMs: g.resetMs, retryAfterMs: g.retryAfterMs }
  }

  async #refill (leases: ExpiringMap<Lease>, lease: Lease, rule: LimitRule, cost: number, sentAt: number): Promise<void> {
    // Keep the expiring map from dropping a lease mid-request (a second lease would double the bound)
    lease.expiresAt = Math.max(lease.expiresAt, sentAt + this.#hold)
    leases.schedule(lease.key, lease)
    // Units held (fewer than cost) go back: one epoch per lease keeps refunds exact
    void this.#void(lease, sentAt)
    try {
      const g = await this.#source.take(lease.key, rule, Math.max(this.#size(rule), cost), cost)
      // Timed from the send, never the reply: Redis's clock read happened in between, so local expiry is early, not late
      lease.resetAt = sentAt + g.resetMs
      if (g.granted > 0) {
        lease.units += g.granted
        lease.epoch = g.epoch
        lease.remaining = g.remaining
        const life = Math.min(this.#ttl, rule.window)
        lease.until = sentAt + (rule.algorithm === 'fixed_window' ? Math.min(life, g.resetMs) : life)
        lease.refusedUntil = 0
      } else {
        this.#refused(lease, g.retryAfterMs, g.resetMs, cost, sentAt)
      }
      lease.expiresAt = Math.max(lease.until, lease.refusedUntil, sentAt + 1)
      leases.schedule(lease.key, lease)
    } finally {
      lease.pending = undefined
    }
  }

  /** Units left at which a lease fetches ahead; -1: never (a fraction of a slice of 1-3 units is 0: fetched when short). */
  #lowWater (rule: LimitRule): number {
    const p = this.#prefetch as number
    const units = p > 0 && p < 1 ? Math.floor(this.#size(rule) * p) : Math.floor(p)
    return units >= 1 ? units : -1
  }

  /** The next units while the current ones are spent: slice minus units held, so the node never holds more than a slice. */
  #refillAhead (lease: Lease, rule: LimitRule, sentAt: number): void {
    const want = this.#size(rule) - lease.units
    if (want <= 0) return
    const leases = this.#leases[rule.algorithm]
    lease.expiresAt = Math.max(lease.expiresAt, sentAt + this.#hold)
    leases.schedule(lease.key, lease)
    lease.pending = this.#source.take(lease.key, rule, want, 1).then((g) => {
      lease.pending = undefined
      const now = this.#now()
      if (g.granted <= 0) {
        // None to spare: remembered like any refusal, so the requests that find the slice short cost no call
        this.#refused(lease, g.retryAfterMs, g.resetMs, 1, sentAt)
        lease.expiresAt = Math.max(lease.expiresAt, lease.until, lease.refusedUntil, sentAt + 1)
        leases.schedule(lease.key, lease)
        return
      }
      lease.resetAt = sentAt + g.resetMs
      lease.remaining = g.remaining
      const life = Math.min(this.#ttl, rule.window)
      const until = sentAt + (rule.algorithm === 'fixed_window' ? Math.min(life, g.resetMs) : life)
      if (lease.until > now && lease.units > 0 && lease.epoch === g.epoch) {
        // Same window: the units join the held ones and die with them (the older deadline, never later)
        lease.units += g.granted
        lease.until = Math.min(lease.until, until)
      } else {
        // Held units of another window (or none, or expired) give way: one epoch per lease keeps refunds exact
        void this.#void(lease, now)
        lease.units = g.granted
        lease.epoch = g.epoch
        lease.until = until
      }
      lease.refusedUntil = 0
      lease.expiresAt = Math.max(lease.until, sentAt + 1)
      leases.schedule(lease.key, lease)
    }, () => { lease.pending = undefined }) // a failing store: the next short request meets it, under the guard
  }

  /** Cache a refusal briefly: a flood of refused requests costs no store call. */
  #refused (lease: Lease, retryAfterMs: number, resetMs: number, cost: number, sentAt: number): void {
    lease.refusedUntil = sentAt + Math.min(retryAfterMs, this.#ttl)
    lease.refusedCost = cost
    lease.resetAt = sentAt + resetMs
  }

  #spend (lease: Lease, rule: LimitRule, cost: number, now: number): Decision {
    lease.units -= cost
    if (this.#prefetch !== false && lease.pending === undefined && lease.units <= this.#lowWater(rule) && lease.units >= 0) {
      this.#refillAhead(lease, rule, now)
    }
    return { allowed: true, limit: rule.limit, remaining: lease.remaining + lease.units, resetMs: Math.max(Math.ceil(lease.resetAt - now), 0), retryAfterMs: 0 }
  }

  /** Drop the lease's units; give them back while that can still credit the window they came from. */
  #void (lease: Lease, now: number): Promise<void> | undefined {
    const units = lease.units
    lease.units = 0
    lease.until = 0
    if (units <= 0 || now >= lease.resetAt) return undefined
    return this.#source.refund(lease.key, lease.rule, units, lease.epoch).catch(() => {})
  }
}

function refused (lease: Lease, rule: LimitRule, now: number): Decision {
  return { allowed: false, limit: rule.limit, remaining: 0, resetMs: Math.max(Math.ceil(lease.resetAt - now), 0), retryAfterMs: Math.ceil(lease.refusedUntil - now) }
}
