import type { Target } from '../upstream/target.js'
import { LowestScoreBalancer } from './two-choices.js'

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
 * Small pools: full scan from a rotating start. Large pools: power-of-two-choices
 * (see LowestScoreBalancer).
 */
export class ResponseTimeBalancer extends LowestScoreBalancer {
  readonly strategy = 'response_time' as const

  protected score (t: Target, now: number): number {
    const ewma = t.ewmaAt(now)
    if (ewma === 0) return t.inFlight === 0 ? 0 : PENALTY_MS * t.inFlight / t.effectiveWeight(now)
    return ewma * (t.inFlight + 1) / t.effectiveWeight(now)
  }
}
