import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { usable, type Balancer, type PickContext } from './types.js'

/** Pools up to this size are scanned in full (deterministic); larger ones use power-of-two-choices. */
const SCAN_MAX = 8
/** Random draws a P2C pick may spend finding two usable candidates before it scans. */
const MAX_PROBES = 16
/** Finagle's PeakEwma penalty (ms, ~11 days): an unsampled target with requests pending waits for their answer. */
const PENALTY_MS = 1e9

/**
 * `response_time`: Finagle/linkerd peak-EWMA cost,
 * score = ewma(now) [ms] × (inFlight + 1) / effectiveWeight.
 * The EWMA decays toward 0 without samples (Target.ewmaAt), so a slow target that
 * recovers is tried again. A target with no sample scores 0 while idle (it is tried),
 * and PENALTY_MS × inFlight while its first requests are pending, so it cannot take all
 * the traffic before it has a latency to compete with.
 *
 * Small pools: full scan from a rotating start. Large pools: power-of-two-choices.
 */
export class ResponseTimeBalancer implements Balancer {
  readonly strategy = 'response_time' as const
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
        return score(t, now) < score(a, now) ? t : a
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
      const s = score(t, now)
      if (s < bestScore || best === undefined) {
        best = t
        bestScore = s
      }
    }
    return best
  }
}

function score (t: Target, now: number): number {
  const ewma = t.ewmaAt(now)
  if (ewma === 0) return t.inFlight === 0 ? 0 : PENALTY_MS * t.inFlight / t.effectiveWeight(now)
  return ewma * (t.inFlight + 1) / t.effectiveWeight(now)
}
