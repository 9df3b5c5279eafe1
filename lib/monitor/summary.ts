// The summary a node publishes with its heartbeat: request/error counts per upstream over sliding
// windows, latency histograms, process load and its view of every target. Derived at publish time
// from the counters the proxy metrics keep anyway, so a request pays nothing for it.
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import type { RouteCounters } from '../metrics/proxy-metrics.js'
import type { UpstreamRegistry } from '../upstream/registry.js'

/** Requests, errors (5xx and proxy errors), latency sum (ms) and non-cumulative histogram counts. */
export interface Counts {
  n: number
  e: number
  /** Sum of latencies, ms. */
  s: number
  /** Counts per DURATION_BUCKETS bound (trailing zeros trimmed); the slot past the last bound is +Inf. */
  b: number[]
}

/** A window's counts and the ms it actually spans (shorter than asked while the node is young). */
export interface WindowCounts extends Counts { d: number }

export function emptyCounts (): Counts { return { n: 0, e: 0, s: 0, b: [] } }

/** Add `c` into `into` (counts and duration buckets). */
export function addCounts (into: Counts, c: Counts): void {
  into.n += c.n
  into.e += c.e
  into.s += c.s
  for (let i = 0; i < c.b.length; i++) into.b[i] = (into.b[i] ?? 0) + c.b[i]
}

/** Add a window into another: windows of different nodes (or workers) cover about the same span, the rate uses the longest. */
export function addWindowCounts (into: WindowCounts, w: WindowCounts): void {
  addCounts(into, w)
  into.d = Math.max(into.d, w.d)
}

/** One target as this node sees it: [id, status, ejected (0|1), circuit, inFlight, ewmaMs]. */
export type TargetView = [string, string, 0 | 1, string, number, number]

export interface UpstreamSummary {
  /** Since the node started. */
  all: Counts
  m1: WindowCounts
  m5: WindowCounts
  tg: TargetView[]
}

/** A notable failover event (retries are left out: they come in storms). */
export interface SummaryEvent { t: number, type: string, upstream: string, target?: string, detail?: string }

export interface NodeSummary {
  /** epoch-ms when taken. */
  t: number
  cpu: number
  /** MiB. */
  rss: number
  /** Event-loop delay p99 since the previous sample, ms. */
  lag: number
  /** Requests in flight to every target. */
  fl: number
  u: Record<string, UpstreamSummary>
  ev: SummaryEvent[]
}

export const WINDOW_1M = 60_000
export const WINDOW_5M = 300_000
export const MAX_EVENTS = 8
const EVENT_MAX_AGE = 600_000

interface Snapshot { t: number, byUpstream: Map<string, Counts> }

export interface SamplerOptions {
  /** Every (route, upstream) counter set the proxy keeps (empty when metrics are off). */
  counters: () => Iterable<RouteCounters>
  upstreams: UpstreamRegistry
  now?: () => number
}

export class NodeSampler {
  private readonly history: Snapshot[] = []
  private readonly events: SummaryEvent[] = []
  private readonly lag: IntervalHistogram
  private cpuAt = process.cpuUsage()
  private wallAt = performance.now()
  private last: NodeSummary | undefined
  private readonly now: () => number
  private readonly startedAt: number

  constructor (private readonly o: SamplerOptions) {
    this.now = o.now ?? Date.now
    this.startedAt = this.now()
    this.lag = monitorEventLoopDelay({ resolution: 20 })
    this.lag.enable()
  }

  /** Take a sample: advance the windows and the process figures. Call once per heartbeat. */
  sample (): NodeSummary {
    const now = this.now()
    const cum = this.cumulative()
    this.history.push({ t: now, byUpstream: cum })
    // keep one snapshot older than 5 min, so the 5 min window is whole
    while (this.history.length > 2 && this.history[1].t <= now - WINDOW_5M) this.history.shift()
    const cpu = process.cpuUsage()
    const wall = performance.now()
    const usedUs = (cpu.user - this.cpuAt.user) + (cpu.system - this.cpuAt.system)
    const cpuPct = wall > this.wallAt ? usedUs / ((wall - this.wallAt) * 1000) * 100 : 0
    this.cpuAt = cpu
    this.wallAt = wall
    const lagMs = this.lag.count > 0 ? this.lag.percentile(99) / 1e6 : 0
    this.lag.reset()
    this.last = this.build(now, cum, { cpu: round1(cpuPct), rss: round1(process.memoryUsage.rss() / 1048576), lag: round1(lagMs) })
    return this.last
  }

  /** The latest sample with the targets (and counts) as they are now: this node's own live view. */
  current (): NodeSummary {
    const last = this.last ?? this.sample()
    return this.build(this.now(), this.cumulative(), last)
  }

  /** The latest sample (what the heartbeat carries). */
  get latest (): NodeSummary | undefined { return this.last }

  noteEvent (e: SummaryEvent): void {
    this.events.push(e)
    if (this.events.length > MAX_EVENTS) this.events.shift()
  }

  close (): void { this.lag.disable() }

  private build (now: number, cum: Map<string, Counts>, load: Pick<NodeSummary, 'cpu' | 'rss' | 'lag'>): NodeSummary {
    const u: Record<string, UpstreamSummary> = {}
    let fl = 0
    for (const entry of this.o.upstreams) {
      const tg: TargetView[] = []
      for (const t of entry.pool.targets) {
        fl += t.inFlight
        tg.push([t.id, t.status, t.ejectedUntil > now ? 1 : 0, t.circuit, t.inFlight, round1(t.ewmaAt(now))])
      }
      const all = cum.get(entry.name) ?? zero()
      u[entry.name] = { all: trim(all), m1: this.window(entry.name, all, now, WINDOW_1M), m5: this.window(entry.name, all, now, WINDOW_5M), tg }
    }
    const ev = this.events.filter((e) => e.t > now - EVENT_MAX_AGE)
    return { t: now, ...load, fl, u, ev }
  }

  /** Counts of the last `span` ms: now minus the newest snapshot at least `span` old (a young node: all since start). */
  private window (name: string, all: Counts, now: number, span: number): WindowCounts {
    let base: Snapshot | undefined
    for (const s of this.history) {
      if (s.t > now - span) break
      base = s
    }
    if (base === undefined) return { ...trim(all), d: Math.max(1, now - this.startedAt) }
    const from = base.byUpstream.get(name) ?? zero()
    const b: number[] = []
    for (let i = 0; i < all.b.length; i++) b.push(all.b[i] - (from.b[i] ?? 0))
    return { ...trim({ n: all.n - from.n, e: all.e - from.e, s: all.s - from.s, b }), d: Math.max(1, now - base.t) }
  }

  private cumulative (): Map<string, Counts> {
    const out = new Map<string, Counts>()
    for (const r of this.o.counters()) {
      let c = out.get(r.upstream)
      if (c === undefined) { c = zero(); out.set(r.upstream, c) }
      c.n += r.count
      c.e += r.byClass[4]
      c.s += r.sum * 1000
      for (let i = 0; i < r.buckets.length; i++) c.b[i] = (c.b[i] ?? 0) + r.buckets[i]
    }
    return out
  }
}

function zero (): Counts { return { n: 0, e: 0, s: 0, b: [] } }

function trim (c: Counts): Counts {
  let end = c.b.length
  while (end > 0 && c.b[end - 1] === 0) end--
  return { n: c.n, e: c.e, s: round1(c.s), b: c.b.slice(0, end) }
}

function round1 (n: number): number { return Math.round(n * 10) / 10 }
