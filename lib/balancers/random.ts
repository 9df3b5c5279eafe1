import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { usable, type Balancer, type PickContext } from './types.js'
import { WeightTableBalancer } from './weight-table.js'

/** Random draws a pick may spend before it falls back to a scan. */
const MAX_PROBES = 16

/**
 * `random`: a random usable target, WEIGHTED by effective weight (equal weights: uniform).
 * Draws come from a Walker/Vose alias table over the configured weights (O(1) per draw,
 * rebuilt only when weights or membership change); a draw of an unusable target is
 * rejected, and a target in slow start is accepted with probability effectiveWeight/weight,
 * which makes the result exactly proportional to effective weight among usable targets.
 * After MAX_PROBES rejections (most of the pool out) it scans: O(n), same distribution.
 */
export class RandomBalancer extends WeightTableBalancer implements Balancer {
  readonly strategy = 'random' as const
  private prob = new Float64Array(0)
  private alias = new Int32Array(0)

  pick (pool: UpstreamPool, ctx: PickContext): Target | undefined {
    this.sync(pool)
    const snap = this.snap
    const n = snap.length
    if (n === 0) return undefined
    const now = ctx.now
    const prob = this.prob
    for (let p = 0; p < MAX_PROBES; p++) {
      const u = Math.random() * n
      const col = u | 0
      const t = snap[u - col < prob[col] ? col : this.alias[col]]
      if (!usable(t, ctx)) continue
      if (t.slowStartUntil > now && Math.random() * t.weight >= t.effectiveWeight(now)) continue
      return t
    }
    return scan(snap, ctx)
  }

  /** Vose's alias method (1991): O(n) build, one uniform draw per sample. */
  protected build (targets: readonly Target[], weights: Float64Array): void {
    const n = targets.length
    let total = 0
    for (let i = 0; i < n; i++) total += weights[i]
    const prob = new Float64Array(n).fill(1)
    const alias = new Int32Array(n)
    for (let i = 0; i < n; i++) alias[i] = i
    if (total > 0) {
      const scaled = new Float64Array(n)
      const small = new Int32Array(n)
      const large = new Int32Array(n)
      let ns = 0
      let nl = 0
      for (let i = 0; i < n; i++) {
        scaled[i] = weights[i] * n / total
        if (scaled[i] < 1) small[ns++] = i
        else large[nl++] = i
      }
      while (ns > 0 && nl > 0) {
        const s = small[--ns]
        const l = large[--nl]
        prob[s] = scaled[s]
        alias[s] = l
        scaled[l] = scaled[l] + scaled[s] - 1
        if (scaled[l] < 1) small[ns++] = l
        else large[nl++] = l
      }
      // Leftovers are 1 up to rounding error: prob stays 1.
    }
    this.prob = prob
    this.alias = alias
  }
}

/** Weighted choice over every usable target by effective weight. */
function scan (targets: readonly Target[], ctx: PickContext): Target | undefined {
  const now = ctx.now
  let sum = 0
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]
    if (usable(t, ctx)) sum += t.effectiveWeight(now)
  }
  if (sum === 0) return undefined
  let r = Math.random() * sum
  let last: Target | undefined
  for (let i = 0; i < targets.length; i++) {
    const t = targets[i]
    if (!usable(t, ctx)) continue
    last = t
    r -= t.effectiveWeight(now)
    if (r < 0) return t
  }
  return last
}
