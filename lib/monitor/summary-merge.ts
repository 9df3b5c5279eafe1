// One node's summary from the summaries of its worker processes (node.workers): what the node served is
// the sum of what each worker served, so rules see the node's traffic, not one worker's share.
//   counts (requests, errors, latency sums, histogram buckets) and in-flight requests: summed;
//   window spans: the longest (the workers started together); rss: summed (the node's memory);
//   cpu and event-loop lag: the highest worker (a saturated event loop is one process's);
//   a target: routable only if every worker sees it so (worst status, ejected or open circuit in any),
//   its in-flight requests summed, its latency EWMA the workers' mean; events: the newest MAX_EVENTS.
import { addCounts as add, addWindowCounts as addWindow, emptyCounts as zero, MAX_EVENTS, type NodeSummary, type TargetView, type UpstreamSummary } from './summary.js'

/** Worst first: the node reports a target by the worst view any of its workers has. */
const STATUS_RANK: Record<string, number> = { unhealthy: 3, draining: 2, unknown: 1, healthy: 0 }

export function mergeSummaries (parts: readonly NodeSummary[]): NodeSummary {
  if (parts.length === 1) return parts[0]
  const u: Record<string, UpstreamSummary> = {}
  const targets = new Map<string, Map<string, { view: TargetView, ewma: number, n: number }>>()
  let t = 0
  let cpu = 0
  let rss = 0
  let lag = 0
  let fl = 0
  const ev: NodeSummary['ev'] = []
  for (const p of parts) {
    t = Math.max(t, p.t)
    cpu = Math.max(cpu, p.cpu)
    rss += p.rss
    lag = Math.max(lag, p.lag)
    fl += p.fl
    ev.push(...p.ev)
    for (const [name, s] of Object.entries(p.u)) {
      let into = u[name]
      if (into === undefined) {
        into = { all: zero(), m1: { ...zero(), d: 0 }, m5: { ...zero(), d: 0 }, tg: [] }
        u[name] = into
        targets.set(name, new Map())
      }
      add(into.all, s.all)
      addWindow(into.m1, s.m1)
      addWindow(into.m5, s.m5)
      const byId = targets.get(name)!
      for (const v of s.tg) {
        const seen = byId.get(v[0])
        if (seen === undefined) { byId.set(v[0], { view: [...v], ewma: v[5], n: 1 }); continue }
        const m = seen.view
        if ((STATUS_RANK[v[1]] ?? 3) > (STATUS_RANK[m[1]] ?? 3)) m[1] = v[1]
        if (v[2] === 1) m[2] = 1
        if (v[3] === 'open' || (v[3] === 'half_open' && m[3] === 'closed')) m[3] = v[3]
        m[4] += v[4]
        seen.ewma += v[5]
        seen.n++
      }
    }
  }
  for (const [name, byId] of targets) {
    u[name].tg = [...byId.values()].map(({ view, ewma, n }) => { view[5] = Math.round(ewma / n * 10) / 10; return view })
  }
  ev.sort((a, b) => a.t - b.t)
  return { t, cpu, rss: Math.round(rss * 10) / 10, lag, fl, u, ev: ev.slice(-MAX_EVENTS) }
}
