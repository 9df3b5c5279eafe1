import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'

/** DESIGN.md strategy names, verbatim. */
export const STRATEGIES = [
  'round_robin',
  'weighted_round_robin',
  'least_connections',
  'response_time',
  'consistent_hash',
  'random',
] as const
export type Strategy = typeof STRATEGIES[number]

/** Per-pick input. Reused across picks where possible: the balancer must not keep it. */
export interface PickContext {
  /** Epoch-ms; read the clock once per request. */
  now: number
  /** Targets this request already tried; never picked again. Usually empty. */
  tried?: readonly Target[]
  /** consistent_hash only: the request's key (already extracted per `hashOn`). */
  hashKey?: string
}

/**
 * One strategy. A balancer instance serves one pool; it may keep state (cursor,
 * smooth-WRR weights, a hash ring) and must rebuild it when `pool.version` moves.
 * `pick` returns undefined when no target is eligible.
 */
export interface Balancer {
  readonly strategy: Strategy
  pick (pool: UpstreamPool, ctx: PickContext): Target | undefined
}

/** Helper shared by strategies: eligible and not yet tried by this request. */
export function usable (t: Target, ctx: PickContext): boolean {
  if (!t.isEligible(ctx.now)) return false
  const tried = ctx.tried
  return tried === undefined || tried.length === 0 || !tried.includes(t)
}
