// The in-memory twins by algorithm name.
import type { Algorithm } from '../types.js'
import type { Grant } from '../grant.js'
import type { Slot } from './slot.js'
import { fixedWindow, fixedWindowRefund } from './fixed-window.js'
import { slidingWindow, slidingWindowRefund } from './sliding-window.js'
import { tokenBucket, tokenBucketRefund } from './token-bucket.js'

export type Step = (s: Slot, now: number, limit: number, window: number, want: number, min: number) => Grant
export type Refund = (s: Slot, now: number, limit: number, window: number, units: number, epoch: number) => void

export const TWINS: Record<Algorithm, { step: Step, refund: Refund }> = {
  fixed_window: { step: fixedWindow, refund: fixedWindowRefund },
  sliding_window: { step: slidingWindow, refund: slidingWindowRefund },
  token_bucket: { step: tokenBucket, refund: tokenBucketRefund },
}

export { Slot } from './slot.js'
