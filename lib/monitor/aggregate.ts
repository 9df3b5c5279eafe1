// ClusterMetrics: the live nodes' summaries merged into per-node, per-upstream and cluster totals.
// Pure: the plugin passes the membership view (each node's last heartbeat) and this node's live summary.
import { DURATION_BUCKETS } from '../metrics/proxy-metrics.js'
import type { AlertRule } from './rule.js'
import { addCounts as add, addWindowCounts as addWindow, emptyCounts, type Counts, type NodeSummary, type WindowCounts } from './summary.js'

export interface NodeInput {
  id: string
  address: string
  status: string
  configVersion: number
  lastSeen: number
  summary?: NodeSummary
}

export interface Stats {
  totalRequests: number
  errorRequests: number
  /** errorRequests / totalRequests; null with no request. */
  errorRate: number | null
  averageResponseTimeMs: number | null
  p99Ms: number | null
}
export interface WindowStats extends Stats { requestRate: number, spanMs: number }

export interface TargetHealth {
  targetsTotal: number
  healthyTargets: number
  unhealthyTargets: number
  /** healthyTargets / targetsTotal; null with no target. */
  healthyRatio: number | null
}

export interface TargetRow {
  id: string
  /** At least half of the nodes that report the target see it routable (healthy or unknown, not ejected, circuit not open). */
  healthy: boolean
  byNode: Record<string, { status: string, ejected: boolean, circuit: string, inFlight: number, ewmaMs: number }>
}

export interface UpstreamMetrics extends Stats, TargetHealth {
  windows: { '1m': WindowStats, '5m': WindowStats }
  targets: TargetRow[]
}

export interface NodeMetrics extends Stats {
  id: string
  address: string
  status: string
  configVersion: number
  lastSeen: string
  cpuPercent: number | null
  rssMb: number | null
  eventLoopLagMs: number | null
  inFlight: number
  events: NodeSummary['ev']
}

export interface ClusterMetricsView {
  at: string
  totals: Stats & TargetHealth & { nodes: number, windows: { '1m': WindowStats, '5m': WindowStats } }
  nodes: NodeMetrics[]
  upstreams: Record<string, UpstreamMetrics>
}

/** Merge the nodes' summaries. Counts since each node started are summed, so totals equal what the live nodes served. */
export function aggregate (nodes: readonly NodeInput[], now = Date.now()): ClusterMetricsView {
  const ups = new Map<string, { all: Counts, m1: WindowCounts, m5: WindowCounts, targets: Map<string, TargetRow> }>()
  const outNodes: NodeMetrics[] = []
  for (const node of nodes) {
    const s = node.summary
    const nodeAll = emptyCounts()
    for (const [name, u] of Object.entries(s?.u ?? {})) {
      if (!wellFormed(u)) continue // another node's data comes through Redis: never let it break the view
      let agg = ups.get(name)
      if (agg === undefined) {
        agg = { all: emptyCounts(), m1: { ...emptyCounts(), d: 0 }, m5: { ...emptyCounts(), d: 0 }, targets: new Map() }
        ups.set(name, agg)
      }
      add(agg.all, u.all)
      add(nodeAll, u.all)
      addWindow(agg.m1, u.m1)
      addWindow(agg.m5, u.m5)
      for (const [id, status, ejected, circuit, inFlight, ewmaMs] of u.tg) {
        let row = agg.targets.get(id)
        if (row === undefined) { row = { id, healthy: false, byNode: {} }; agg.targets.set(id, row) }
        row.byNode[node.id] = { status, ejected: ejected === 1, circuit, inFlight, ewmaMs }
      }
    }
    outNodes.push({
      id: node.id,
      address: node.address,
      status: node.status,
      configVersion: node.configVersion,
      lastSeen: new Date(node.lastSeen).toISOString(),
      cpuPercent: s?.cpu ?? null,
      rssMb: s?.rss ?? null,
      eventLoopLagMs: s?.lag ?? null,
      inFlight: s?.fl ?? 0,
      ...stats(nodeAll),
      events: s?.ev ?? [],
    })
  }
  const upstreams: Record<string, UpstreamMetrics> = {}
  const all = emptyCounts()
  const m1 = { ...emptyCounts(), d: 0 }
  const m5 = { ...emptyCounts(), d: 0 }
  let total = 0
  let healthy = 0
  for (const [name, agg] of [...ups].sort(([a], [b]) => a < b ? -1 : 1)) {
    const targets = [...agg.targets.values()]
    for (const row of targets) {
      const views = Object.values(row.byNode)
      const up = views.filter(routable).length
      // the cluster's verdict: one node's flap (a probe timing out on a busy node) does not fire a cluster alert
      row.healthy = up * 2 >= views.length
    }
    const h = health(targets.length, targets.filter((r) => r.healthy).length)
    upstreams[name] = { ...stats(agg.all), ...h, windows: { '1m': windowStats(agg.m1), '5m': windowStats(agg.m5) }, targets }
    add(all, agg.all)
    addWindow(m1, agg.m1)
    addWindow(m5, agg.m5)
    total += h.targetsTotal
    healthy += h.healthyTargets
  }
  return {
    at: new Date(now).toISOString(),
    totals: { ...stats(all), ...health(total, healthy), nodes: nodes.length, windows: { '1m': windowStats(m1), '5m': windowStats(m5) } },
    nodes: outNodes,
    upstreams,
  }
}

/** The value a rule compares: of its upstream when it names one, else of the whole cluster; undefined: no data. */
export function metricValue (view: ClusterMetricsView, rule: Pick<AlertRule, 'condition' | 'window' | 'upstream'>): number | undefined {
  const metric = rule.condition.metric
  const maxOfNodes = (pick: (n: NodeMetrics) => number | null): number | undefined => {
    const vals = view.nodes.map(pick).filter((v): v is number => v !== null)
    return vals.length === 0 ? undefined : Math.max(...vals)
  }
  switch (metric) {
    case 'nodes': return view.totals.nodes
    case 'cpu_percent': return maxOfNodes((n) => n.cpuPercent)
    case 'rss_mb': return maxOfNodes((n) => n.rssMb)
    case 'event_loop_lag_ms': return maxOfNodes((n) => n.eventLoopLagMs)
  }
  const scope = rule.upstream === undefined ? view.totals : view.upstreams[rule.upstream]
  if (scope === undefined) return undefined
  const w = scope.windows[rule.window]
  switch (metric) {
    case 'error_rate': return w.errorRate ?? undefined
    case 'p99_ms': return w.p99Ms ?? undefined
    case 'average_response_time_ms': return w.averageResponseTimeMs ?? undefined
    case 'request_rate': return w.requestRate
    case 'healthy_ratio': return scope.healthyRatio ?? undefined
    case 'unhealthy_targets': return scope.unhealthyTargets
  }
}

/** Latency quantile (ms) of non-cumulative bucket counts, interpolated inside its bucket as Prometheus's histogram_quantile. */
export function quantileMs (b: readonly number[], q: number): number | null {
  let count = 0
  for (const c of b) count += c
  if (count === 0) return null
  const rank = q * count
  let seen = 0
  for (let i = 0; i < b.length; i++) {
    if (seen + b[i] >= rank && b[i] > 0) {
      // past the largest bound: the largest bound is all we know
      if (i >= DURATION_BUCKETS.length) return DURATION_BUCKETS[DURATION_BUCKETS.length - 1] * 1000
      const lo = i === 0 ? 0 : DURATION_BUCKETS[i - 1]
      const hi = DURATION_BUCKETS[i]
      return round2((lo + (hi - lo) * (rank - seen) / b[i]) * 1000)
    }
    seen += b[i]
  }
  return DURATION_BUCKETS[DURATION_BUCKETS.length - 1] * 1000
}

function isCounts (c: unknown): c is Counts {
  const o = c as Counts
  return typeof o === 'object' && o !== null && typeof o.n === 'number' && typeof o.e === 'number' && typeof o.s === 'number' && Array.isArray(o.b)
}

function wellFormed (u: unknown): u is NodeSummary['u'][string] {
  const o = u as NodeSummary['u'][string]
  return typeof o === 'object' && o !== null && isCounts(o.all) && isCounts(o.m1) && isCounts(o.m5) && Array.isArray(o.tg) &&
    o.tg.every((t) => Array.isArray(t) && t.length === 6 && typeof t[0] === 'string')
}

function routable (v: TargetRow['byNode'][string]): boolean {
  return (v.status === 'healthy' || v.status === 'unknown') && !v.ejected && v.circuit !== 'open'
}

function health (total: number, healthy: number): TargetHealth {
  return { targetsTotal: total, healthyTargets: healthy, unhealthyTargets: total - healthy, healthyRatio: total === 0 ? null : round6(healthy / total) }
}

function stats (c: Counts): Stats {
  return {
    totalRequests: c.n,
    errorRequests: c.e,
    errorRate: c.n === 0 ? null : round6(c.e / c.n),
    averageResponseTimeMs: c.n === 0 ? null : round2(c.s / c.n),
    p99Ms: quantileMs(c.b, 0.99),
  }
}

function windowStats (w: WindowCounts): WindowStats {
  return { ...stats(w), requestRate: w.d > 0 ? round2(w.n / (w.d / 1000)) : 0, spanMs: w.d }
}

function round2 (n: number): number { return Math.round(n * 100) / 100 }
function round6 (n: number): number { return Math.round(n * 1e6) / 1e6 }
