// The in-memory twins and the Lua scripts are the same algorithm: fed the same clock, they answer the same.
import t from 'tap'
import { Redis } from 'ioredis'
import { startRedis } from '../helpers/redis.js'
import { excess, busiestSpan, type Admission } from '../helpers/ratelimit-bounds.js'
import { MemoryStore } from '../../lib/ratelimit/memory-store.js'
import { SCRIPTS } from '../../lib/ratelimit/scripts/index.js'
import { LUA_NOW } from '../../lib/ratelimit/scripts/clock.js'
import { EPOCH_MS, type Grant } from '../../lib/ratelimit/grant.js'
import { ALGORITHMS, type Algorithm, type LimitRule } from '../../lib/ratelimit/types.js'

/** A seeded PRNG (mulberry32): failures replay. */
function prng (seed: number): () => number {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** The script with the clock taken from ARGV[6] and TTLs left out (they run on Redis's real clock). */
function withInjectedClock (algorithm: Algorithm): string {
  let lua = SCRIPTS[algorithm].lua
  const cut = (from: string, to: string): void => {
    if (!lua.includes(from)) throw new Error(`${algorithm}: no ${from}`)
    lua = lua.replace(from, to)
  }
  cut(LUA_NOW, '\nlocal now = tonumber(ARGV[6])\n')
  if (algorithm === 'token_bucket') {
    cut("redis.call('SET', key, s.tat, 'PX', s.px)", "redis.call('SET', key, s.tat)")
  } else {
    cut("redis.call('PEXPIRE', key,", '-- no TTL (')
  }
  return lua
}

t.test('twin and script agree step by step on random sequences (injected clock, µs fractions, refunds)', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const client = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => { client.disconnect() })
  for (const algorithm of ALGORITHMS) {
    const lua = withInjectedClock(algorithm)
    for (const [seed, limit, window] of [[1, 7, 1000], [2, 50, 60_000], [3, 3, 333], [4, 1000, 1000]] as const) {
      const rnd = prng(seed)
      const rule: LimitRule = { algorithm, limit, window }
      let now = EPOCH_MS + 86_400_000 + Math.floor(rnd() * 1e6)
      const store = new MemoryStore({ now: () => now })
      const key = `tw:{${algorithm}:${seed}}`
      const steps = [0, 0, 0.001, 1, 7.25, window / 7, window / 2, window * 1.3, window * 3]
      let lastEpoch = 0
      const diffs: string[] = []
      for (let i = 0; i < 400; i++) {
        now += steps[Math.floor(rnd() * steps.length)] + Math.round(rnd() * 1000) / 1000
        const at = now - EPOCH_MS
        const r = rnd()
        if (r < 0.15) {
          const units = 1 + Math.floor(rnd() * 4)
          const epoch = lastEpoch - (rnd() < 0.3 ? 1 : 0)
          await store.refund(key, rule, units, epoch)
          await client.eval(lua, 1, key, limit, window, -units, 0, epoch, at)
          continue
        }
        const want = Math.floor(rnd() * Math.min(limit + 3, 12))
        const min = r < 0.6 ? want : Math.floor(rnd() * (want + 1)) // exact consume, or a lease-style take
        const twin = await store.take(key, rule, want, min)
        const reply = await client.eval(lua, 1, key, limit, window, want, min, 0, at) as number[]
        const lua6: Grant = { allowed: reply[0] === 1, remaining: reply[1], resetMs: reply[2], retryAfterMs: reply[3], granted: reply[4], epoch: reply[5] }
        lastEpoch = twin.epoch
        if (JSON.stringify(twin) !== JSON.stringify(lua6)) diffs.push(`step ${i} want ${want} min ${min}: twin ${JSON.stringify(twin)} lua ${JSON.stringify(lua6)}`)
      }
      t.same(diffs.slice(0, 3), [], `${algorithm} limit ${limit}/${window} ms, seed ${seed}: 400 steps identical`)
      await store.close()
    }
  }
})

t.test('exact twins keep their guarantees under random traffic', async (t) => {
  for (const algorithm of ALGORITHMS) {
    for (const seed of [11, 12, 13]) {
      const rnd = prng(seed)
      const rule: LimitRule = { algorithm, limit: 20, window: 1000 }
      let now = EPOCH_MS + 86_400_000
      const store = new MemoryStore({ now: () => now })
      const admitted: Admission[] = []
      for (let i = 0; i < 3000; i++) {
        now += rnd() < 0.1 ? rnd() * 300 : rnd() * 5 // bursts and pauses
        const cost = rnd() < 0.8 ? 1 : 1 + Math.floor(rnd() * 4)
        if (store.consumeSync('k', rule, cost).allowed) admitted.push({ at: now - EPOCH_MS, cost })
      }
      const over = excess(rule, admitted)
      t.ok(over <= 1e-9, `${algorithm} seed ${seed}: ${admitted.length} admitted, excess ${over.toFixed(3)} <= 0`)
      if (algorithm === 'sliding_window') {
        for (const d of [1, 100, 500, 1000]) {
          const most = busiestSpan(admitted, d)
          t.ok(most <= Math.floor(rule.limit * (1 + d / rule.window)), `sliding_window: busiest ${d} ms span ${most} <= limit * (1 + d / W)`)
        }
      }
      await store.close()
    }
  }
})
