import type { Registry } from 'prom-client'
import type { UpstreamRegistry } from '../upstream/registry.js'
import { counter, gauge } from './registry.js'

export interface FailoverMetrics {
  retry (upstream: string, reason: string | number): void
  budgetExhausted (upstream: string): void
  fallback (upstream: string): void
  hedge (upstream: string): void
}

/** circuit_state values: Prometheus gauges are numbers. */
const CIRCUIT_VALUE = { closed: 0, half_open: 1, open: 2 } as const

/**
 * Failover metrics. Counters move only on the failure path; circuit_state reads the live
 * Target objects at scrape time, so a request pays nothing for it.
 */
export function createFailoverMetrics (registry: Registry, upstreams: UpstreamRegistry): FailoverMetrics {
  const retries = counter(registry, {
    name: 'retries_total',
    help: 'Retries on another target, by upstream and the reason the previous try failed',
    labelNames: ['upstream', 'reason'] as const,
  })
  const exhausted = counter(registry, {
    name: 'retry_budget_exhausted_total',
    help: 'Retries and hedges refused because the upstream retry budget was spent',
    labelNames: ['upstream'] as const,
  })
  const fallbacks = counter(registry, {
    name: 'fallback_total',
    help: 'Requests answered by a fallback (pool or static response), by primary upstream',
    labelNames: ['upstream'] as const,
  })
  const hedges = counter(registry, {
    name: 'hedges_total',
    help: 'Hedged requests sent, by upstream',
    labelNames: ['upstream'] as const,
  })
  gauge(registry, {
    name: 'circuit_state',
    help: 'Circuit breaker state of each target: 0 closed, 1 half_open, 2 open',
    labelNames: ['upstream', 'target'] as const,
    collect () {
      this.reset()
      for (const e of upstreams) for (const t of e.pool.targets) this.set({ upstream: e.name, target: t.id }, CIRCUIT_VALUE[t.circuit])
    },
  })
  return {
    retry (upstream, reason) { retries.inc({ upstream, reason: String(reason) }) },
    budgetExhausted (upstream) { exhausted.inc({ upstream }) },
    fallback (upstream) { fallbacks.inc({ upstream }) },
    hedge (upstream) { hedges.inc({ upstream }) },
  }
}
