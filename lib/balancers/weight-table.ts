import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'

/**
 * A strategy with a table derived from the pool's membership and weights (consistent_hash's
 * ring, random's alias table). `sync` rebuilds it only when a target was added, removed or
 * re-weighted: a status-only version bump (pool.touch) keeps it. O(1) when the version is unchanged.
 */
export abstract class WeightTableBalancer {
  private pool: UpstreamPool | undefined
  private version = -1
  private weights = new Float64Array(0)
  /** The targets the table was built over (index i of the table is snap[i]). */
  protected snap: readonly Target[] = []

  protected sync (pool: UpstreamPool): void {
    if (pool === this.pool && pool.version === this.version) return
    const targets = pool.targets
    let rebuild = pool !== this.pool || targets !== this.snap
    for (let i = 0; !rebuild && i < targets.length; i++) rebuild = targets[i].weight !== this.weights[i]
    if (rebuild) {
      const weights = new Float64Array(targets.length)
      for (let i = 0; i < targets.length; i++) weights[i] = targets[i].weight
      this.weights = weights
      this.build(targets, weights)
    }
    this.pool = pool
    this.version = pool.version
    this.snap = targets
  }

  /** Build the table over `targets` with their `weights` (a snapshot, same indices). */
  protected abstract build (targets: readonly Target[], weights: Float64Array): void
}
