// token_bucket as GCRA, in-memory twin of scripts/token-bucket.ts.
//
// GCRA, virtual scheduling form (ITU-T I.371 / ATM Forum TM 4.0): one value per key, the theoretical
// arrival time TAT (ms), the moment every spent unit has been refilled. A unit refills every
// T = window / limit ms; the bucket holds `limit` units, so a request passes while
// TAT - now + cost * T <= window. No refill loop, no timestamps per unit.
import { UNIT_EPSILON, type Grant } from '../grant.js'
import type { Slot } from './slot.js'

export function tokenBucket (s: Slot, now: number, limit: number, window: number, want: number, min: number): Grant {
  // ms of spent units not yet refilled
  const debt = Math.max(s.tat - now, 0)
  const available = Math.max(Math.floor(limit * (window - debt) / window + UNIT_EPSILON), 0)
  const granted = Math.min(want, available)
  if (granted < min) {
    // `min` units are back once the debt has shrunk to window - min * T
    const wait = min <= limit ? debt - window * (limit - min) / limit : debt
    return { allowed: false, remaining: 0, resetMs: Math.ceil(debt), retryAfterMs: Math.max(Math.ceil(wait), 1), granted: 0, epoch: 0 }
  }
  const next = debt + granted * window / limit
  if (granted > 0) {
    s.tat = now + next
    s.expiresAt = now + Math.ceil(next)
  }
  return { allowed: true, remaining: available - granted, resetMs: Math.ceil(next), retryAfterMs: 0, granted, epoch: 0 }
}

/** Give back unspent units: move TAT back by their refill time, never before now (a full bucket). */
export function tokenBucketRefund (s: Slot, now: number, limit: number, window: number, units: number): void {
  if (s.tat > now) s.tat = Math.max(s.tat - units * window / limit, now)
}
