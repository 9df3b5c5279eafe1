// The rate limiter's stores: where exact, lease and local decisions are made, and who closes them.
import type { RedisClient } from '../cluster/redis-connection.js'
import { LeaseStore } from './lease-store.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore } from './redis-store.js'
import type { RateLimitStore } from './types.js'

export interface Stores {
  exact: RateLimitStore
  lease: RateLimitStore
  local: RateLimitStore | undefined
  /** The exact store is the plugin's RedisStore, which reports the duration of its own script calls. */
  timesItself: boolean
  close (): Promise<void>
}

/**
 * Exact decisions in Redis when there is a client, else in memory (one node). Lease mode spends slices of
 * the Redis budget locally; without Redis it is the memory store (already local and exact).
 * Policy `local` gets its own in-memory limiter.
 */
export function createStores (o: {
  client: RedisClient | undefined
  timeout: number
  store?: RateLimitStore
  leaseStore?: RateLimitStore
  local: boolean
  /** Policy `local`'s limiter when it is not this process's memory (node.workers: the primary's). */
  localStore?: RateLimitStore
  onDuration?: (seconds: number) => void
  onLate?: (allowed: number, total: number) => void
}): Stores {
  const owned: RateLimitStore[] = []
  const own = <S extends RateLimitStore>(s: S): S => { owned.push(s); return s }
  let exact = o.store
  let lease = o.leaseStore
  if (o.client !== undefined) {
    const redis = new RedisStore({ client: o.client, timeout: o.timeout, onDuration: o.onDuration, onLate: o.onLate })
    exact ??= own(redis)
    // a hot key's next units are fetched while a quarter of its slice is left: its requests do not wait on Redis
    lease ??= own(new LeaseStore({ source: redis, prefetch: 0.25 }))
  }
  exact ??= own(new MemoryStore())
  lease ??= exact
  const local = o.local ? o.localStore ?? own(new MemoryStore()) : undefined
  return {
    exact,
    lease,
    local,
    timesItself: o.store === undefined && o.client !== undefined,
    async close () { await Promise.all(owned.map(async (s) => await s.close?.())) },
  }
}
