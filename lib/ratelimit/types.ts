// The contract between rate-limit algorithms, stores and the plugin.

export const ALGORITHMS = ['fixed_window', 'sliding_window', 'token_bucket'] as const
export type Algorithm = typeof ALGORITHMS[number]

/** exact: every decision in the store; lease: spend a slice of the budget locally. */
export const LIMIT_MODES = ['exact', 'lease'] as const
export type LimitMode = typeof LIMIT_MODES[number]

/** Rate-limit headers: draft RateLimit-*, legacy X-RateLimit-*, both, none. */
export const HEADER_STYLES = ['draft', 'legacy', 'both', 'none'] as const
export type HeaderStyle = typeof HEADER_STYLES[number]

/** One limit, normalized (window in ms). */
export interface LimitRule {
  algorithm: Algorithm
  /** Units allowed per window (token_bucket: bucket size; refills `limit` per `window`). */
  limit: number
  /** ms */
  window: number
  /** Lease mode: units a node takes from Redis per call (default max(1, floor(limit / 20))). */
  leaseSize?: number
}

/** The answer for one key under one rule. All times in ms. */
export interface Decision {
  allowed: boolean
  limit: number
  /** Units left after this request (0 when refused). */
  remaining: number
  /** ms until the budget is fully available again (RateLimit `reset`). */
  resetMs: number
  /** ms the client should wait before a retry would pass (0 when allowed). */
  retryAfterMs: number
}

/**
 * A store decides atomically: check and spend `cost` units of `key` under `rule`.
 * `key` is already hashed and prefixed by the caller (no client string reaches it raw).
 * A store that fails rejects (Redis down, deadline passed); the plugin applies the outage policy.
 */
export interface RateLimitStore {
  consume (key: string, rule: LimitRule, cost: number): Promise<Decision>
  /** Optional: the same decision synchronously when it needs no I/O, else undefined (then the caller calls consume). */
  consumeNow? (key: string, rule: LimitRule, cost: number): Decision | undefined
  close? (): Promise<void>
  /**
   * Optional: which server holds `key` (Redis Cluster: its slot's master). The outage policy is applied per shard:
   * a dead master degrades its keys only. Absent or '': one shard.
   */
  shardOf? (key: string): string
  /** Optional: forget every key (the local limiter of policy `local` starts afresh when the store degrades). */
  clear? (): void
  /**
   * Optional, for the local limiter of policy `local`: the store it stood in for answers again (every shard). A
   * limiter shared by several processes (node.workers) counts afresh only when the first of them degrades.
   */
  recovered? (): void
}
