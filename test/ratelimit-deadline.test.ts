// The store deadline measures Redis, not our own event loop (issue 15): a reply read in the poll phase after a late
// timer still counts, stalls of this process do not, a hung store still fails within deadlineCap; one failed batch is
// one store error; a late reply is reported with Redis's verdict; policy local counts from the moment of degradation.
import t from 'tap'
import { Redis } from 'ioredis'
import { Deadline, deadlineCap, withDeadline, RateLimitStoreError } from '../lib/ratelimit/deadline.js'
import { RedisStore } from '../lib/ratelimit/redis-store.js'
import { MemoryStore } from '../lib/ratelimit/memory-store.js'
import { StoreGuard } from '../lib/ratelimit/outage.js'
import type { LimitRule } from '../lib/ratelimit/types.js'
import { startRedis } from './helpers/redis.js'
import { FakeClock } from './helpers/fake-clock.js'

const rule: LimitRule = { algorithm: 'fixed_window', limit: 2, window: 3_600_000 }
const busy = (ms: number): void => { const end = performance.now() + ms; while (performance.now() < end); }

t.test('a timely answer read after a blocked loop is not a timeout', async (t) => {
  // the answer is ready at 5 ms, but the loop is blocked for 80 ms past a 20 ms deadline
  const work = new Promise<string>((resolve) => { setTimeout(() => resolve('yes'), 5) })
  const p = withDeadline(work, 20)
  busy(80)
  t.equal(await p, 'yes')
})

t.test('a store that never answers fails at the deadline on an idle loop, and within deadlineCap when the loop stalls', async (t) => {
  const never = new Promise<never>(() => {})
  let t0 = performance.now()
  const err = await withDeadline(never, 30).catch((e: unknown) => e) as RateLimitStoreError
  const idle = performance.now() - t0
  t.ok(err instanceof RateLimitStoreError && err.kind === 'timeout', 'a timeout')
  t.ok(err.waitedMs !== undefined && err.waitedMs >= 30, `waited ${err.waitedMs?.toFixed(0)} ms, measured`)
  t.comment(`idle loop: timed out after ${idle.toFixed(0)} ms (deadline 30 ms)`)
  t0 = performance.now()
  const p = withDeadline(never, 30).catch((e: unknown) => e)
  const stall = setInterval(() => busy(20), 25) // this process is starved: each period fires late
  await p
  clearInterval(stall)
  const stalled = performance.now() - t0
  t.comment(`stalled loop: timed out after ${stalled.toFixed(0)} ms (cap ${deadlineCap(30)} ms)`)
  t.ok(stalled >= 30, 'still a timeout, later')
  t.equal(deadlineCap(50), 200)
  t.equal(deadlineCap(150), 300, 'stretched by 150 ms at most')
})

t.test('a stall of this process that ends before the deadline is due is not charged (fake clock)', async (t) => {
  const clock = new FakeClock(1000)
  let expired: number | undefined
  const d = new Deadline(50, (w) => { expired = w }, clock)
  await clock.advance(10)
  await clock.stall(35) // starved from 10 to 45 ms: the deadline's own timer (due at 50) fires on time
  await clock.advance(15)
  t.equal(expired, undefined, 'not at 60 ms: 35 ms of the wait were this process\'s')
  t.ok(d.charged() < 50, `charged ${d.charged()} ms of 60`)
  await clock.advance(40)
  t.ok(expired !== undefined && expired >= 80 && expired <= 90, `expired after 50 ms charged (at ${expired} ms)`)
})

t.test('a hung store on a loop that never runs on time still fails within deadlineCap and one more turn (fake clock)', async (t) => {
  const clock = new FakeClock(0)
  let expired: number | undefined
  const d = new Deadline(50, (w) => { expired = w }, clock)
  for (let i = 0; i < 60 && expired === undefined; i++) await clock.stall(20) // every tick late
  t.ok(expired !== undefined && expired >= deadlineCap(50) && expired <= deadlineCap(50) + 40, `expired at ${expired} ms (cap ${deadlineCap(50)})`)
  d.cancel()
})

t.test('Deadline.cancel stops it', async (t) => {
  let fired = false
  const d = new Deadline(5, () => { fired = true })
  d.cancel()
  await new Promise((resolve) => setTimeout(resolve, 30))
  t.notOk(fired)
})

t.test('a stopped Redis: one batch that times out is one store error; its late reply is reported with Redis\'s verdict', async (t) => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.kill('SIGCONT'); await redis.stop() })
  const client = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1 })
  t.teardown(() => { client.disconnect() })
  const late: Array<[number, number]> = []
  const store = new RedisStore({ client, timeout: 30, onLate: (a, n) => late.push([a, n]) })
  // script loaded, connection up; on a busy machine the first call can miss its 30 ms: try again (Redis answers
  // in order, so a missed warm-up's late report arrives before the next warm-up's answer and is cleared with it)
  for (let i = 0; ; i++) {
    try { await store.consume('warm', rule, 1); break } catch (err) { if (i >= 20) throw err }
  }
  late.length = 0
  let errors = 0
  const guard = new StoreGuard({ policy: 'fail_open', onError: () => errors++ })
  await redis.kill('SIGSTOP')
  const outs = await Promise.all(Array.from({ length: 5 }, async () => await guard.consume(store, 'k', rule, 1)))
  t.same(outs.map((o) => o.source), ['open', 'open', 'open', 'open', 'open'], 'five decisions, let through open')
  t.equal(errors, 1, 'one batch, one store error')
  await redis.kill('SIGCONT')
  for (let i = 0; i < 100 && late.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(late, [[2, 5]], 'the late reply: Redis counted all five, allowed 2 (limit 2): 3 were admitted over the limit')
  const after = await store.consume('k', rule, 1)
  t.equal(after.allowed, false, 'and they count against the window')
})

t.test('while the store fails, a key it refused stays refused until its Retry-After, whatever the policy', async (t) => {
  let now = 0
  let down = false
  const store = {
    consume: async (key: string) => {
      if (down) throw new Error('down')
      return key === 'spent' ? { allowed: false, limit: 2, remaining: 0, resetMs: 1000, retryAfterMs: 1000 } : { allowed: true, limit: 2, remaining: 1, resetMs: 1000, retryAfterMs: 0 }
    },
  }
  const local = new MemoryStore()
  t.teardown(async () => { await local.close() })
  for (const policy of ['fail_open', 'local'] as const) {
    const guard = new StoreGuard({ policy, localStore: local, now: () => now, tripAfter: 100 })
    down = false
    now = 0
    t.equal((await guard.consume(store, 'spent', rule, 1)).allowed, false, `${policy}: Redis refuses 'spent' for 1 s`)
    down = true
    now = 500
    const o = await guard.consume(store, 'spent', rule, 1)
    t.same([o.allowed, o.source, o.retryAfterMs], [false, undefined, 500], `${policy}: Redis down, 'spent' still refused, by Redis's last word`)
    t.equal((await guard.consume(store, 'other', rule, 1)).source, policy === 'fail_open' ? 'open' : 'local', `${policy}: another key follows the policy`)
    now = 1000
    t.equal((await guard.consume(store, 'spent', rule, 1)).source, policy === 'fail_open' ? 'open' : 'local', `${policy}: after its Retry-After the policy decides`)
  }
})

t.test('per shard (Redis Cluster masters): a failing master degrades its keys only; a shard no key maps to anymore is dropped', async (t) => {
  let now = 0
  let calls = 0
  const store = {
    shardOf: (key: string) => key.startsWith('a') ? 'A:1' : 'B:2',
    consume: async (key: string) => {
      calls++
      if (key.startsWith('a')) throw new Error('master A down')
      return { allowed: true, limit: 2, remaining: 1, resetMs: 1000, retryAfterMs: 0 }
    },
  }
  let errors = 0
  const states: boolean[] = []
  const guard = new StoreGuard({ policy: 'fail_closed', now: () => now, onError: () => errors++, onDegraded: (b) => states.push(b) })
  for (let i = 0; i < 3; i++) t.equal((await guard.consume(store, 'a1', rule, 1)).source, 'closed')
  t.ok(guard.degraded, 'degraded')
  t.same((guard as unknown as { degradedShardNames: string[] }).degradedShardNames, ['A:1'])
  calls = 0
  t.equal((await guard.consume(store, 'a2', rule, 1)).source, 'closed', 'shard A skipped (short circuit)')
  t.equal(calls, 0, 'no call to the dead master')
  const b = await guard.consume(store, 'b1', rule, 1)
  t.same([b.allowed, b.source, calls], [true, undefined, 1], 'shard B still decided by Redis')
  now = 1500 // the failover moved A's slots to another master: no key maps to A:1 anymore
  await guard.consume(store, 'b2', rule, 1)
  t.notOk(guard.degraded, 'A dropped after 1 s without a decision: not degraded anymore')
  t.same(states, [true, false])
})

t.test('policy local: counted from the moment of degradation', async (t) => {
  const local = new MemoryStore()
  t.teardown(async () => { await local.close() })
  let down = true
  const store = { consume: async () => { if (down) throw new Error('down'); return { allowed: true, limit: 2, remaining: 1, resetMs: 0, retryAfterMs: 0 } } }
  const guard = new StoreGuard({ policy: 'local', localStore: local, liveNodes: () => 1, tripAfter: 100 })
  const first = await Promise.all([1, 2, 3].map(async () => (await guard.consume(store, 'k', rule, 1)).allowed))
  t.same(first, [true, true, false], 'first outage: the local share (2)')
  down = false
  await guard.consume(store, 'k', rule, 1)
  t.notOk(guard.degraded, 'recovered')
  down = true
  const second = await Promise.all([1, 2, 3].map(async () => (await guard.consume(store, 'k', rule, 1)).allowed))
  t.same(second, [true, true, false], 'a new outage starts from zero: nothing carried over from the first')
})
