import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { UpstreamRegistry } from '../upstream/registry.js'
import { metricOnce } from './registry.js'

/** Seconds; covers a fast loopback hop (~0.5 ms) to a slow upstream (10 s). */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export interface RouteMetrics {
  /** index 0..5: 1xx..5xx, resolved once per route so a request does no label lookups */
  byClass: Array<{ inc: () => void }>
  duration: { observe: (seconds: number) => void }
}

export interface ProxyMetrics {
  requests: Counter<'route' | 'upstream' | 'status_class'>
  duration: Histogram<'route' | 'upstream'>
  forRoute (route: string, upstream: string): RouteMetrics
}

/**
 * Proxy metrics. Per-target gauges read the live Target objects at scrape time,
 * so the request path pays nothing for them.
 */
export function createProxyMetrics (registry: Registry, upstreams: UpstreamRegistry): ProxyMetrics {
  const requests = metricOnce(registry, 'proxy_requests_total', () => new Counter({
    name: 'proxy_requests_total',
    help: 'Proxied requests by route, upstream and the status class the client got',
    labelNames: ['route', 'upstream', 'status_class'] as const,
    registers: [registry],
  }))
  const duration = metricOnce(registry, 'proxy_request_duration_seconds', () => new Histogram({
    name: 'proxy_request_duration_seconds',
    help: 'Time from request received to response sent, by route and upstream',
    labelNames: ['route', 'upstream'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  }))
  metricOnce(registry, 'upstream_target_in_flight', () => new Gauge({
    name: 'upstream_target_in_flight',
    help: 'Requests in flight to each target',
    labelNames: ['upstream', 'target'] as const,
    registers: [registry],
    collect () {
      this.reset()
      for (const e of upstreams) for (const t of e.pool.targets) this.set({ upstream: e.name, target: t.id }, t.inFlight)
    },
  }))
  metricOnce(registry, 'upstream_target_selections_total', () => new Counter({
    name: 'upstream_target_selections_total',
    help: 'Times the balancer picked each target',
    labelNames: ['upstream', 'target'] as const,
    registers: [registry],
    collect () {
      this.reset()
      for (const e of upstreams) for (const t of e.pool.targets) this.inc({ upstream: e.name, target: t.id }, t.selections)
    },
  }))
  metricOnce(registry, 'upstream_target_weight', () => new Gauge({
    name: 'upstream_target_weight',
    help: 'Configured weight of each target',
    labelNames: ['upstream', 'target'] as const,
    registers: [registry],
    collect () {
      this.reset()
      for (const e of upstreams) for (const t of e.pool.targets) this.set({ upstream: e.name, target: t.id }, t.weight)
    },
  }))

  return {
    requests,
    duration,
    forRoute (route, upstream) {
      const byClass = ['1xx', '2xx', '3xx', '4xx', '5xx'].map((c) => requests.labels(route, upstream, c))
      return { byClass, duration: duration.labels(route, upstream) }
    },
  }
}
