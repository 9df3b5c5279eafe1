// fixed_window, in-memory twin of scripts/window.ts: one counter per window aligned on EPOCH_MS.
import type { Grant } from '../grant.js'
import type { Slot } from './slot.js'

/** Spend min(want, available) units if that is at least `min`. `now` in ms since EPOCH_MS. */
export function fixedWindow (s: Slot, now: number, limit: number, window: number, want: number, min: number): Grant {
  const w = Math.floor(now / window)
  const resetIn = Math.ceil((w + 1) * window - now)
  const count = s.w === w ? s.c : 0
  const available = Math.max(limit - count, 0)
  const granted = Math.min(want, available)
  if (granted < min) {
    // The next window starts empty (a `min` above the limit never passes)
    return { allowed: false, remaining: 0, resetMs: count > 0 ? resetIn : 0, retryAfterMs: resetIn, granted: 0, epoch: w }
  }
  if (granted > 0) {
    s.w = w
    s.c = count + granted
    s.expiresAt = now + resetIn
  }
  return { allowed: true, remaining: available - granted, resetMs: count + granted > 0 ? resetIn : 0, retryAfterMs: 0, granted, epoch: w }
}

/** Give back units taken in window `epoch`; a later window has forgotten them already. */
export function fixedWindowRefund (s: Slot, now: number, limit: number, window: number, units: number, epoch: number): void {
  if (s.w === epoch && epoch === Math.floor(now / window)) s.c = Math.max(s.c - units, 0)
}
