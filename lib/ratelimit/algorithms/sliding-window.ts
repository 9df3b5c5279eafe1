// sliding_window, in-memory twin of scripts/window.ts: the two-window weighted counter.
//
// estimate(t) = prev * (window - elapsed) / window + cur (Cloudflare, "How we built rate limiting
// capable of scaling to millions of domains", 2017): the previous window's count is assumed spread
// evenly, so the share of it still inside the sliding span [t - window, t] is weighted in.
// Bound (proved in scripts/window.ts): in any span of d <= window ms at most
// limit * (1 + d / window) units pass (a burst at a boundary: limit, where fixed_window lets 2 * limit
// through); over n whole windows at most n * limit.
import type { Grant } from '../grant.js'
import type { Slot } from './slot.js'

export function slidingWindow (s: Slot, now: number, limit: number, window: number, want: number, min: number): Grant {
  const w = Math.floor(now / window)
  const elapsed = now - w * window
  let c = 0
  let p = 0
  if (s.w === w) {
    c = s.c
    p = s.p
  } else if (s.w === w - 1) {
    p = s.c
  }
  const weighted = p * (window - elapsed) / window
  const available = Math.max(Math.floor(limit - c - weighted), 0)
  const granted = Math.min(want, available)
  if (granted < min) {
    return { allowed: false, remaining: 0, resetMs: resetOf(window, elapsed, c, p), retryAfterMs: retryOf(limit, window, elapsed, c, p, min), granted: 0, epoch: w }
  }
  c += granted
  if (granted > 0) {
    s.w = w
    s.c = c
    s.p = p
    // Counted units weigh until the end of the next window
    s.expiresAt = now + Math.ceil(2 * window - elapsed)
  }
  return { allowed: true, remaining: available - granted, resetMs: resetOf(window, elapsed, c, p), retryAfterMs: 0, granted, epoch: w }
}

/** ms until the estimate is 0: `cur` weighs until the end of the next window, `prev` until the end of this one. */
function resetOf (window: number, elapsed: number, c: number, p: number): number {
  if (c > 0) return Math.ceil(2 * window - elapsed)
  return p > 0 ? Math.ceil(window - elapsed) : 0
}

/** ms until `n` units fit: the estimate falls linearly, so solve for the elapsed time it crosses limit - n. */
function retryOf (limit: number, window: number, elapsed: number, c: number, p: number, n: number): number {
  let wait: number
  if (c + n <= limit) wait = window - (limit - c - n) * window / p - elapsed
  else if (n <= limit) wait = window - elapsed + Math.max(window - (limit - n) * window / c, 0)
  else wait = resetOf(window, elapsed, c, p)
  return Math.max(Math.ceil(wait), 1)
}

/** Give back units taken in window `epoch`, whether it is still the current one or now the previous one. */
export function slidingWindowRefund (s: Slot, now: number, limit: number, window: number, units: number, epoch: number): void {
  if (s.w === epoch) s.c = Math.max(s.c - units, 0)
  else if (s.w === epoch + 1) s.p = Math.max(s.p - units, 0)
}
