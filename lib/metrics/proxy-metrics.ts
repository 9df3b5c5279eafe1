import { Counter, Histogram, type Registry } from 'prom-client'
import type { UpstreamRegistry } from '../upstream/registry.js'
import { counter, gauge, histogram } from './registry.js'

/** Seconds; covers a fast loopback hop (~0.5 ms) to a slow upstream (10 s). */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const

/**
 * One (route, upstream)'s request counts and duration histogram as plain numbers: a request
 * does a few array writes and no label hashing. prom-client reads them at scrape time.
 */
export class RouteCounters {
  readonly route: string
  readonly upstream: string
  /** index 0..4: 1xx..5xx (anything else counts as 5xx) */
  readonly byClass = new Float64Array(5)
  /** Non-cumulative counts per DURATION_BUCKETS bound; the last slot is above the largest bound. */
  readonly buckets = new Float64Array(DURATION_BUCKETS.length + 1)
  sum = 0
  count = 0
  /** Streamed responses cut after their head went out (the upstream's body failed or stalled). */
  streamsCut = 0
  /** Label objects handed to prom-client at scrape time (made once). */
  readonly classLabels: ReadonlyArray<Record<string, string>>
  readonly durationLabels: Record<string, string>

  constructor (route: string, upstream: string) {
    this.route = route
    this.upstream = upstream
    this.classLabels = STATUS_CLASSES.map((c) => ({ route, upstream, status_class: c }))
    this.durationLabels = { route, upstream }
  }

  /** One finished request: the status the client got and the time it took (ms). */
  record (status: number, ms: number): void {
    const cls = ((status / 100) | 0) - 1
    this.byClass[cls < 0 || cls > 4 ? 4 : cls]++
    const s = ms / 1000
    const b = DURATION_BUCKETS
    let i = 0
    while (i < b.length && s > b[i]) i++
    this.buckets[i]++
    this.sum += s
    this.count++
  }
}

export interface ProxyMetrics {
  requests: Counter<'route' | 'upstream' | 'status_class'>
  duration: Histogram<'route' | 'upstream'>
  /** The counters of one (route, upstream), shared by every plan with those labels. */
  forRoute (route: string, upstream: string): RouteCounters
  /** Every (route, upstream)'s counters (read at scrape or heartbeat time). */
  all (): Iterable<RouteCounters>
}

/** Counters of every route, per registry: metrics are shared through metricOnce, so is this. */
const stores = new WeakMap<Registry, Map<string, RouteCounters>>()

/** The shape prom-client 15 keeps per label set in Histogram#hashMap (read at scrape time only). */
interface HistogramEntry { labels: object, bucketValues: Record<string, number>, sum: number, count: number }

/**
 * Proxy metrics. Per-target gauges read the live Target objects, and the per-route counters
 * and histograms read RouteCounters, at scrape time (collect), so the request path pays
 * nothing to prom-client.
 */
export function createProxyMetrics (registry: Registry, upstreams: UpstreamRegistry): ProxyMetrics {
  let store = stores.get(registry)
  if (store === undefined) {
    store = new Map()
    stores.set(registry, store)
  }
  const routes = store
  const requests = counter(registry, {
    name: 'proxy_requests_total',
    help: 'Proxied requests by route, upstream and the status class the client got',
    labelNames: ['route', 'upstream', 'status_class'] as const,
    collect () {
      this.reset()
      for (const r of routes.values()) {
        for (let c = 0; c < 5; c++) if (r.byClass[c] > 0) this.inc(r.classLabels[c], r.byClass[c])
      }
    },
  })
  const duration = histogram(registry, {
    name: 'proxy_request_duration_seconds',
    help: 'Time from request received to response sent, by route and upstream',
    labelNames: ['route', 'upstream'] as const,
    buckets: DURATION_BUCKETS,
    collect () {
      this.reset()
      const byLabels = new Map<object, RouteCounters>()
      for (const r of routes.values()) {
        if (r.count === 0) continue
        this.zero(r.durationLabels)
        byLabels.set(r.durationLabels, r)
      }
      const map = (this as unknown as { hashMap: Record<string, HistogramEntry> }).hashMap
      for (const key in map) {
        const e = map[key]
        const r = byLabels.get(e.labels)
        if (r === undefined || e.bucketValues === undefined) continue
        for (let i = 0; i < DURATION_BUCKETS.length; i++) e.bucketValues[DURATION_BUCKETS[i]] = r.buckets[i]
        e.sum = r.sum
        e.count = r.count
      }
    },
  })
  counter(registry, {
    name: 'proxy_streams_cut_total',
    help: 'Responses cut after their head reached the client (the upstream body failed, stalled past timeouts.body, or the deadline passed)',
    labelNames: ['route', 'upstream'] as const,
    collect () {
      this.reset()
      for (const r of routes.values()) if (r.streamsCut > 0) this.inc(r.durationLabels, r.streamsCut)
    },
  })
  gauge(registry, {
    name: 'upstream_target_in_flight',
    help: 'Requests in flight to each target',
    labelNames: ['upstream', 'target'] as const,
    collect () {
      this.reset()
      for (const e of upstreams) for (const t of e.pool.targets) this.set({ upstream: e.name, target: t.id }, t.inFlight)
    },
  })
  counter(registry, {
    name: 'upstream_target_selections_total',
    help: 'Times the balancer picked each target',
    labelNames: ['upstream', 'target'] as const,
    collect () {
      this.reset()
      for (const e of upstreams) for (const t of e.pool.targets) this.inc({ upstream: e.name, target: t.id }, t.selections)
    },
  })
  gauge(registry, {
    name: 'upstream_target_weight',
    help: 'Configured weight of each target',
    labelNames: ['upstream', 'target'] as const,
    collect () {
      this.reset()
      for (const e of upstreams) for (const t of e.pool.targets) this.set({ upstream: e.name, target: t.id }, t.weight)
    },
  })

  return {
    requests,
    duration,
    all: () => routes.values(),
    forRoute (route, upstream) {
      const key = `${route}\u0000${upstream}`
      let r = routes.get(key)
      if (r === undefined) {
        r = new RouteCounters(route, upstream)
        routes.set(key, r)
      }
      return r
    },
  }
}
