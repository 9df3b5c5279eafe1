import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { usable, type Balancer, type PickContext, type Strategy } from './types.js'

/** Pools up to this size are scanned in full (deterministic); larger ones use power-of-two-choices. */
const SCAN_MAX = 8
/** Random draws a P2C pick may spend finding two usable candidates before it scans. */
const MAX_PROBES = 16

/**
 * A strategy that sends to the usable target of lowest score (least_connections, response_time).
 *
 * Small pools: a full scan from a rotating start, so equal targets take turns.
 * Large pools: power-of-two-choices (Mitzenmacher 2001): two random usable targets, take the
 * lower score; O(1) expected, and it never picks the most loaded target. When most of the pool
 * is out (no two usable targets in MAX_PROBES draws) it scans.
 */
export abstract class LowestScoreBalancer implements Balancer {
  abstract readonly strategy: Strategy
  private start = 0

  /** Lower is better. `now` is epoch-ms. */
  protected abstract score (t: Target, now: number): number

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
        return this.score(t, now) < this.score(a, now) ? t : a
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
      const s = this.score(t, now)
      if (s < bestScore || best === undefined) {
        best = t
        bestScore = s
      }
    }
    return best
  }
}
