import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { usable, type Balancer, type PickContext } from './types.js'

/**
 * `round_robin`: a cursor over `pool.targets`, skipping targets that are not usable.
 * Weights are ignored (except that weight 0 is never eligible). O(1) amortised.
 */
export class RoundRobinBalancer implements Balancer {
  readonly strategy = 'round_robin' as const
  private cursor = 0

  pick (pool: UpstreamPool, ctx: PickContext): Target | undefined {
    const targets = pool.targets
    const n = targets.length
    if (n === 0) return undefined
    // The array may have shrunk since the last pick: wrap the cursor first.
    let i = this.cursor < n ? this.cursor : this.cursor % n
    for (let k = 0; k < n; k++) {
      const t = targets[i]
      i = i + 1 === n ? 0 : i + 1
      if (usable(t, ctx)) {
        this.cursor = i
        return t
      }
    }
    return undefined
  }
}
