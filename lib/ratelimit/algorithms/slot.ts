// The state of one key, one shape for every algorithm (monomorphic in V8); mirrors what the Lua scripts keep in Redis.

export class Slot {
  /** fixed/sliding window: index of the window `c` counts (-1 on a fresh slot, harmless: c and p are 0). Small integers stay unboxed. */
  w = -1
  /** Units spent in window `w`. */
  c = 0
  /** sliding_window: units spent in window `w - 1`. */
  p = 0
  /** token_bucket: theoretical arrival time, ms since EPOCH_MS (-Infinity: full bucket). */
  tat = -Infinity
  /** ms since EPOCH_MS after which the state is worthless (the Redis key's TTL). */
  expiresAt = 0
  /** Expiry-wheel bucket the key is filed under (ExpiringMap bookkeeping). */
  bucket = -1
}
