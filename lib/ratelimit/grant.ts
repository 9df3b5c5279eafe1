// What one algorithm step answers, shared by the Lua scripts, their in-memory twins and lease mode.
import type { Decision, LimitRule } from './types.js'

/**
 * Clock origin of every algorithm: 2024-01-01T00:00:00Z in Unix ms. Times near 1e11 ms keep doubles precise
 * to ~15 ns, where Unix ms (1.7e12) would give ~0.25 µs. A whole number of days after the Unix epoch, so any
 * window that divides a day (1 s, 1 min, 1 h) starts on the wall clock's boundaries.
 */
export const EPOCH_MS = 1_704_067_200_000

/** Units counted as whole when a float lands this close below an integer (GCRA, sliding weights). */
export const UNIT_EPSILON = 1e-6

/**
 * One step of an algorithm: spend min(want, available) units if that is at least `min`.
 * Exact mode asks want = min = cost (all or nothing); lease mode asks want = slice, min = 1.
 */
export interface Grant {
  allowed: boolean
  /** Units left after this step (0 when refused). */
  remaining: number
  /** ms until the budget is full again. */
  resetMs: number
  /** ms until `min` units would be granted (0 when allowed). */
  retryAfterMs: number
  /** Units spent by this step (0 when refused). */
  granted: number
  /** Window index the units were counted in (fixed and sliding window; 0 for token_bucket): refunds name it. */
  epoch: number
}

/** A store lease mode can take slices from and return unused units to. */
export interface GrantSource {
  take (key: string, rule: LimitRule, want: number, min: number): Promise<Grant>
  /** Give back `units` taken under `epoch`; a no-op once that window is gone. */
  refund (key: string, rule: LimitRule, units: number, epoch: number): Promise<void>
  /** Optional: which server holds `key` (RateLimitStore.shardOf). */
  shardOf? (key: string): string
}

export function toDecision (g: Grant, limit: number): Decision {
  return { allowed: g.allowed, limit, remaining: g.remaining, resetMs: g.resetMs, retryAfterMs: g.retryAfterMs }
}

/** Short suffix per algorithm: a rule whose algorithm changes on reload never reads the other's state. */
export const ALGORITHM_SUFFIX = { fixed_window: ':fw', sliding_window: ':sw', token_bucket: ':tb' } as const
