import type { Registry } from 'prom-client'
import type { HealthRegistry, ProbeSample } from '../health/index.js'
import type { UpstreamRegistry } from '../upstream/registry.js'
import { counter, gauge, histogram } from './registry.js'

/** Health metrics. The healthy gauge reads live targets at scrape time; events feed the counters. */
export function createHealthMetrics (registry: Registry, upstreams: UpstreamRegistry, health: HealthRegistry): { onProbe: (s: ProbeSample) => void } {
  gauge(registry, {
    name: 'upstream_target_healthy',
    help: '1 when the target is eligible for traffic (healthy or unknown-routable, not ejected, circuit not open), else 0',
    labelNames: ['upstream', 'target'] as const,
    collect () {
      this.reset()
      const now = Date.now()
      for (const e of upstreams) for (const t of e.pool.targets) this.set({ upstream: e.name, target: t.id }, t.isEligible(now) ? 1 : 0)
    },
  })
  const probeDuration = histogram(registry, {
    name: 'health_probe_duration_seconds',
    help: 'Active probe duration by upstream, probe type and result',
    labelNames: ['upstream', 'type', 'result'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
  })
  const transitions = counter(registry, {
    name: 'health_transitions_total',
    help: 'Target status transitions',
    labelNames: ['upstream', 'from', 'to'] as const,
  })
  const ejections = counter(registry, {
    name: 'health_ejections_total',
    help: 'Passive outlier ejections',
    labelNames: ['upstream', 'reason'] as const,
  })
  health.subscribe((e) => {
    if (e.type === 'transition') transitions.inc({ upstream: e.upstream, from: e.from, to: e.to })
    else if (e.type === 'ejected') ejections.inc({ upstream: e.upstream, reason: e.reason })
  })
  return {
    onProbe (s) {
      probeDuration.observe({ upstream: s.upstream, type: s.type, result: s.result.ok ? 'pass' : 'fail' }, s.result.durationMs / 1000)
    },
  }
}
