import type { UpstreamPool } from '../upstream/pool.js'
import { HealthEvents, type EjectionEvent, type HealthEvent, type ReadmissionEvent, type TransitionEvent, type Unsubscribe } from './events.js'
import { PoolHealth, type PoolHealthOptions, type TargetHealthSnapshot } from './state.js'

export interface HealthSummary {
  healthy: number
  unhealthy: number
  unknown: number
  draining: number
  ejected: number
  /** Targets a request could be sent to right now (Target.isEligible). */
  eligible: number
}

/**
 * Owns the health state of every upstream pool of a node and the one event hub
 * the plugin, the logger and the metrics subscribe to.
 */
export class HealthRegistry {
  readonly events = new HealthEvents()
  private readonly pools = new Map<string, PoolHealth>()

  /** The PoolHealth of `pool`, created on first use; a new pool object under a known name replaces it. */
  forPool (pool: UpstreamPool, options: PoolHealthOptions = {}): PoolHealth {
    const existing = this.pools.get(pool.name)
    if (existing !== undefined && existing.pool === pool) {
      if (options.slowStart !== undefined) existing.slowStart = options.slowStart
      return existing
    }
    const health = new PoolHealth(pool, this.events, options)
    this.pools.set(pool.name, health)
    return health
  }

  get (upstream: string): PoolHealth | undefined { return this.pools.get(upstream) }
  delete (upstream: string): boolean { return this.pools.delete(upstream) }
  get upstreams (): string[] { return [...this.pools.keys()] }

  /** Per-target status for the status route; undefined for an unknown upstream. */
  snapshot (upstream: string, now = Date.now()): TargetHealthSnapshot[] | undefined {
    return this.pools.get(upstream)?.snapshot(now)
  }

  summary (upstream: string, now = Date.now()): HealthSummary | undefined {
    const health = this.pools.get(upstream)
    if (health === undefined) return undefined
    const s: HealthSummary = { healthy: 0, unhealthy: 0, unknown: 0, draining: 0, ejected: 0, eligible: 0 }
    for (const t of health.pool.targets) {
      s[t.status]++
      if (t.ejectedUntil !== 0) s.ejected++
      if (t.isEligible(now)) s.eligible++
    }
    return s
  }

  subscribe (fn: (e: HealthEvent) => void): Unsubscribe { return this.events.subscribe(fn) }
  onTransition (fn: (e: TransitionEvent) => void): Unsubscribe { return this.events.on('transition', fn) }
  /** Ejections and re-admissions. */
  onEjection (fn: (e: EjectionEvent | ReadmissionEvent) => void): Unsubscribe {
    return this.events.subscribe((e) => { if (e.type === 'ejected' || e.type === 'readmitted') fn(e) })
  }
}
