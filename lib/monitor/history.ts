// Cluster request and error rates over the last minutes, for the dashboard's chart: one point per sample.
import type { ClusterMetricsView } from './aggregate.js'

export interface RatePoint { t: number, rps: number, eps: number }

/** Points kept: 5 min at one sample a second. */
const MAX_POINTS = 300

export class RateHistory {
  private readonly ring: RatePoint[] = []
  private prev: { t: number, byNode: Map<string, { n: number, e: number }> } | undefined

  /** Add a point from the nodes' counts since they started; a node seen for the first time adds nothing. */
  add (v: ClusterMetricsView, now = Date.now()): void {
    const byNode = new Map(v.nodes.map((n) => [n.id, { n: n.totalRequests, e: n.errorRequests }]))
    const prev = this.prev
    this.prev = { t: now, byNode }
    if (prev === undefined || now <= prev.t) return
    let dn = 0
    let de = 0
    for (const [id, c] of byNode) {
      const p = prev.byNode.get(id)
      if (p === undefined) continue
      // a restarted node counts from 0 again
      dn += Math.max(0, c.n - p.n)
      de += Math.max(0, c.e - p.e)
    }
    const s = (now - prev.t) / 1000
    this.ring.push({ t: now, rps: round2(dn / s), eps: round2(de / s) })
    if (this.ring.length > MAX_POINTS) this.ring.shift()
  }

  points (): RatePoint[] { return this.ring.slice() }
}

function round2 (n: number): number { return Math.round(n * 100) / 100 }
