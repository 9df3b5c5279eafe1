import type { Registry } from 'prom-client'
import { counter, gauge, histogram } from './registry.js'

export const DECISIONS = ['allowed', 'limited', 'shadow_limited', 'error_open', 'error_closed', 'local'] as const
export type DecisionLabel = typeof DECISIONS[number]

/** Seconds; a loopback Redis call is ~0.2 ms, the default deadline 50 ms. */
export const STORE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]

/** Decisions of one route, plain numbers: a request adds 1, the scrape reads them (no label hashing per request). */
export type RouteDecisions = Record<DecisionLabel, number>

export interface RateLimitMetrics {
  forRoute (route: string): RouteDecisions
  storeError (): void
  storeDuration (seconds: number): void
  setDegraded (degraded: boolean): void
  /** A timed-out store call was answered after all: `allowed` of its `total` decisions were within the limit in Redis. */
  late (allowed: number, total: number): void
}

/** Counts kept by every limiter of one registry (two plugin instances on one app add up). */
interface Counts { routes: Map<string, RouteDecisions>, errors: number }
const countsOf = new WeakMap<Registry, Counts>()

export function createRateLimitMetrics (registry: Registry): RateLimitMetrics {
  let counts = countsOf.get(registry)
  if (counts === undefined) {
    const c: Counts = { routes: new Map(), errors: 0 }
    counts = c
    countsOf.set(registry, c)
    counter(registry, {
      name: 'ratelimit_decisions_total',
      help: 'Rate-limit decisions by route: allowed, limited, shadow_limited (would have been limited), error_open / error_closed / local (store failing)',
      labelNames: ['route', 'decision'] as const,
      collect () {
        this.reset()
        for (const [route, d] of c.routes) for (const k of DECISIONS) if (d[k] > 0) this.inc({ route, decision: k }, d[k])
      },
  })
    counter(registry, {
      name: 'ratelimit_store_errors_total',
      help: 'Rate-limit store calls that failed (Redis down, deadline passed)',
      collect () {
        this.reset()
        this.inc(c.errors)
      },
  })
  }
  const shared = counts
  const duration = histogram(registry, {
    name: 'ratelimit_store_duration_seconds',
    help: 'Duration of rate-limit store calls, failed ones included',
    buckets: STORE_BUCKETS,
  })
  const degraded = gauge(registry, {
    name: 'ratelimit_degraded',
    help: '1 while the rate-limit store fails and the onStoreError policy applies',
  })
  const late = counter(registry, {
    name: 'ratelimit_store_late_decisions_total',
    help: 'Decisions of store calls answered after their deadline (decided by onStoreError), by what Redis decided: allowed, refused (the excess fail_open let through)',
    labelNames: ['redis'] as const,
  })
  degraded.set(0)
  return {
    forRoute (route) {
      let d = shared.routes.get(route)
      if (d === undefined) {
        d = { allowed: 0, limited: 0, shadow_limited: 0, error_open: 0, error_closed: 0, local: 0 }
        shared.routes.set(route, d)
      }
      return d
    },
    storeError () { shared.errors++ },
    storeDuration (s) { duration.observe(s) },
    setDegraded (b) { degraded.set(b ? 1 : 0) },
    late (allowed, total) {
      if (allowed > 0) late.inc({ redis: 'allowed' }, allowed)
      if (total > allowed) late.inc({ redis: 'refused' }, total - allowed)
    },
  }
}
