import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { usable, type Balancer, type PickContext } from './types.js'

/** Pools up to this size are scanned in full (deterministic); larger ones use power-of-two-choices. */
const SCAN_MAX = 8
/** Random draws a P2C pick may spend finding two usable candidates before it scans. */
const MAX_PROBES = 16

/**
 * `least_connections`: fewest requests in flight relative to weight,
 * score = inFlight / effectiveWeight (slow start included).
 *
 * Small pools: a full scan from a rotating start, so equal targets take turns.
 * Large pools: power-of-two-choices (Mitzenmacher 2001): two random usable targets,
 * take the lower score; O(1) expected, and it never picks the most loaded target.
 */
export class LeastConnectionsBalancer implements Balancer {
  readonly strategy = 'least_connections' as const
  private start = 0

  pick (pool: UpstreamPool, ctx: PickContext): Target | undefined {
    const targets = pool.targets
    const n = targets.length
    if (n > SCAN_MAX) {
      const now = ctx.now
      let a: Target | undefined
      for (let p = 0; p < MAX_PROBES; p++) {
        const t = targets[(Math.random() * n) | 0]
        if (t === a || !usable(t, ctx)) continue
        if (a === undefined) { a = t; continue }
        return t.inFlight / t.effectiveWeight(now) < a.inFlight / a.effectiveWeight(now) ? t : a
      }
    }
    return this.scan(targets, ctx)
  }

  private scan (targets: readonly Target[], ctx: PickContext): Target | undefined {
    const n = targets.length
    if (n === 0) return undefined
    const now = ctx.now
    const start = this.start < n ? this.start : this.start % n
    this.start = start + 1 === n ? 0 : start + 1
    let best: Target | undefined
    let bestScore = Infinity
    for (let k = 0, i = start; k < n; k++, i = i + 1 === n ? 0 : i + 1) {
      const t = targets[i]
      if (!usable(t, ctx)) continue
      const score = t.inFlight / t.effectiveWeight(now)
      if (score < bestScore || best === undefined) {
        best = t
        bestScore = score
      }
    }
    return best
  }
}
