import type { Target } from '../upstream/target.js'
import type { PoolChange, UpstreamPool } from '../upstream/pool.js'
import type { CircuitEvent } from './events.js'
import { classifyError } from './classify-error.js'
import { CircuitBreaker, REFUSED, type BreakerHooks, type CircuitBreakerOptions } from './breaker-circuit.js'

export type BreakerOutcome = 'success' | 'failure' | 'ignore'

/**
 * What a finished try tells the breaker: a transport failure or a 5xx counts against the
 * target; an error that says nothing about it (client abort) is ignored; anything else succeeds.
 */
export function breakerOutcome (status: number | undefined, err?: unknown): BreakerOutcome {
  if (err !== undefined && err !== null) return classifyError(err) === 'other' ? 'ignore' : 'failure'
  return status !== undefined && status >= 500 ? 'failure' : 'success'
}

/**
 * One CircuitBreaker per target of a pool: created for targets present and added later,
 * disposed when a target is removed. Lookups are one Map.get per try.
 */
export class PoolBreakers {
  readonly pool: UpstreamPool
  readonly options: CircuitBreakerOptions
  private readonly breakers = new Map<Target, CircuitBreaker>()
  private readonly hooks: BreakerHooks
  private readonly onChange = (change: PoolChange): void => {
    if (change.type === 'added') this.add(change.target)
    else if (change.type === 'removed') this.drop(change.target)
  }

  constructor (
    pool: UpstreamPool,
    options: CircuitBreakerOptions = {},
    hooks: { now?: () => number, onEvent?: (event: CircuitEvent, target: Target) => void, timers?: boolean } = {},
  ) {
    this.pool = pool
    this.options = options
    this.hooks = { ...hooks, upstream: pool.name }
    for (const t of pool.targets) this.add(t)
    pool.on('change', this.onChange)
  }

  get (target: Target): CircuitBreaker | undefined { return this.breakers.get(target) }

  /** See CircuitBreaker.acquire; REFUSED for a target this pool no longer holds. */
  acquire (target: Target, now?: number): number {
    return this.breakers.get(target)?.acquire(now) ?? REFUSED
  }

  /** Report a finished try; `outcome` from breakerOutcome(). */
  record (target: Target, ticket: number, outcome: BreakerOutcome, now?: number): void {
    const b = this.breakers.get(target)
    if (b === undefined || ticket === REFUSED) return
    if (outcome === 'success') b.success(ticket, now)
    else if (outcome === 'failure') b.failure(ticket, now)
    else b.release(ticket)
  }

  /** Move every due open circuit to half_open (only needed with `timers: false`). */
  poll (now?: number): void {
    for (const b of this.breakers.values()) b.poll(now)
  }

  /** Stop listening and timers; targets go back to closed with no cap. */
  dispose (): void {
    this.pool.off('change', this.onChange)
    for (const b of this.breakers.values()) b.dispose()
    this.breakers.clear()
  }

  private add (target: Target): void {
    if (!this.breakers.has(target)) this.breakers.set(target, new CircuitBreaker(target, this.options, this.hooks))
  }

  private drop (target: Target): void {
    this.breakers.get(target)?.dispose()
    this.breakers.delete(target)
  }
}
