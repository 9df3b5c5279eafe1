import type { Target } from '../upstream/target.js'
import { LowestScoreBalancer } from './two-choices.js'

/**
 * `least_connections`: fewest requests in flight relative to weight,
 * score = inFlight / effectiveWeight (slow start included). Small pools are scanned,
 * large ones use power-of-two-choices (see LowestScoreBalancer): O(1) on 1,000 targets.
 */
export class LeastConnectionsBalancer extends LowestScoreBalancer {
  readonly strategy = 'least_connections' as const

  protected score (t: Target, now: number): number {
    return t.inFlight / t.effectiveWeight(now)
  }
}
