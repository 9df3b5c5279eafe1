// RedisStore against a real redis-server: exactness under concurrency, the hard deadline, NOSCRIPT healing, TTLs.
import t from 'tap'
import { Redis, type RedisOptions } from 'ioredis'
import { startRedis } from '../helpers/redis.js'
import { RedisStore } from '../../lib/ratelimit/redis-store.js'
import { RateLimitStoreError } from '../../lib/ratelimit/deadline.js'
import { SCRIPTS } from '../../lib/ratelimit/scripts/index.js'
import { ALGORITHMS, type LimitRule } from '../../lib/ratelimit/types.js'
import { createHash } from 'node:crypto'
import { once } from 'node:events'

const redis = await startRedis()
t.teardown(() => redis.stop())

// REDIS.md: a client that never queues while Redis is gone, and is back within 0.5 s of its return
const FAIL_FAST: RedisOptions = {
  enableOfflineQueue: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false, connectTimeout: 500,
  retryStrategy: (n) => Math.min(n * 50, 500),
}
function client (opts: RedisOptions = {}): Redis {
  const c = new Redis(redis.port, '127.0.0.1', opts)
  c.on('error', () => {}) // reconnect noise while Redis is down in these tests
  t.teardown(() => { c.disconnect() })
  return c
}
const admin = client()
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
let seq = 0
const key = (): string => `gw:rl:/t:0:{k${++seq}}`

// Unhandled rejections from the losing side of a deadline race would land here
const unhandled: unknown[] = []
const onUnhandled = (err: unknown): void => { unhandled.push(err) }
process.on('unhandledRejection', onUnhandled)
t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

for (const algorithm of ALGORITHMS) {
  t.test(`${algorithm}: 300 concurrent consumes from 3 clients against a limit of 50 admit exactly 50`, async (t) => {
    // Long windows: no boundary and no refill during the burst (token_bucket: T = 12 s)
    const rule: LimitRule = { algorithm, limit: 50, window: algorithm === 'token_bucket' ? 600_000 : 3_600_000 }
    const stores = [client(), client(), client()].map((c) => new RedisStore({ client: c, timeout: 2000 }))
    const k = key()
    const ds = await Promise.all(Array.from({ length: 300 }, async (_, i) => await stores[i % 3].consume(k, rule, 1)))
    t.equal(ds.filter((d) => d.allowed).length, 50)
    const remaining = ds.filter((d) => d.allowed).map((d) => d.remaining).sort((a, b) => a - b)
    t.same(remaining, Array.from({ length: 50 }, (_, i) => i), 'each admitted request saw a distinct remaining count')
    t.ok(ds.filter((d) => !d.allowed).every((d) => d.remaining === 0 && d.retryAfterMs > 0))
  })
}

t.test('every key gets a TTL and is gone once its window has passed', async (t) => {
  const store = new RedisStore({ client: admin, timeout: 2000 })
  const bounds = { fixed_window: 200, sliding_window: 400, token_bucket: 200 }
  const k = key()
  for (const algorithm of ALGORITHMS) {
    await store.consume(k, { algorithm, limit: 5, window: 200 }, 2)
    const suffix = { fixed_window: ':fw', sliding_window: ':sw', token_bucket: ':tb' }[algorithm]
    const ttl = await admin.pttl(k + suffix)
    t.ok(ttl > 0 && ttl <= bounds[algorithm], `${algorithm}: PTTL ${ttl} ms <= ${bounds[algorithm]}`)
  }
  await sleep(450)
  t.same(await admin.keys(`${k}*`), [], 'all expired')
  const refused = await store.consume(key(), { algorithm: 'fixed_window', limit: 1, window: 60_000 }, 2)
  t.notOk(refused.allowed)
  const same = key()
  for (const algorithm of ALGORITHMS) t.ok((await store.consume(same, { algorithm, limit: 5, window: 60_000 }, 1)).allowed)
  t.equal((await admin.keys(`${same}*`)).length, 3, 'one key per algorithm: a rule switching algorithms never reads the other\'s state')
})

t.test('NOSCRIPT heals: after SCRIPT FLUSH the next consume reloads the script and counting goes on', async (t) => {
  const store = new RedisStore({ client: client(), timeout: 2000 })
  const rule: LimitRule = { algorithm: 'sliding_window', limit: 5, window: 60_000 }
  const k = key()
  t.equal((await store.consume(k, rule, 1)).remaining, 4)
  t.equal((await store.consume(k, rule, 1)).remaining, 3)
  const sha = createHash('sha1').update(SCRIPTS.sliding_window.lua).digest('hex')
  t.same(await admin.script('EXISTS', sha), [1])
  await admin.script('FLUSH')
  t.same(await admin.script('EXISTS', sha), [0], 'the cache is empty, as after a failover')
  t.equal((await store.consume(k, rule, 1)).remaining, 2, 'EVALSHA failed with NOSCRIPT, EVAL ran it')
  t.same(await admin.script('EXISTS', sha), [1], 'and loaded it again')
  t.equal((await store.consume(k, rule, 1)).remaining, 1)
})

t.test('a hung Redis (SIGSTOP): consume rejects at the deadline, then works once Redis resumes', async (t) => {
  // Default ioredis options: no commandTimeout; the store's own deadline is the only protection
  const c = client()
  const store = new RedisStore({ client: c, timeout: 50 })
  const rule: LimitRule = { algorithm: 'fixed_window', limit: 100, window: 60_000 }
  const k = key()
  // Connect and load the script without the 50 ms deadline: this shared machine may be slow to do so
  t.ok((await new RedisStore({ client: c, timeout: 2000 }).consume(k, rule, 1)).allowed)
  await redis.kill('SIGSTOP')
  try {
    const started = performance.now()
    const results = await Promise.allSettled(Array.from({ length: 20 }, async () => await store.consume(k, rule, 1)))
    const took = performance.now() - started
    t.ok(results.every((r) => r.status === 'rejected' && r.reason instanceof RateLimitStoreError && r.reason.kind === 'timeout' &&
      r.reason.code === 'FHG_ERR_RATE_LIMIT_STORE_TIMEOUT' && r.reason.statusCode === 503), '20 of 20 rejected with the typed timeout')
    t.ok(took >= 45 && took < 50 + 250, `rejected after ${took.toFixed(0)} ms (deadline 50)`)
  } finally {
    await redis.kill('SIGCONT')
  }
  await sleep(100) // the late replies arrive now and must be absorbed
  const d = await store.consume(k, rule, 1)
  t.ok(d.allowed)
  t.equal(d.remaining, 100 - 22, 'the 20 late calls did run in Redis: a deadline does not cancel a sent command')
  t.same(unhandled, [], 'no unhandled rejection from the losing side')
})

t.test('a killed Redis: consume rejects within the deadline, and works again within 1 s of its restart', async (t) => {
  const c = client(FAIL_FAST)
  await once(c, 'ready') // without an offline queue, nothing may be sent before
  const store = new RedisStore({ client: c, timeout: 50 })
  const rule: LimitRule = { algorithm: 'token_bucket', limit: 100, window: 60_000 }
  const k = key()
  t.ok((await new RedisStore({ client: c, timeout: 2000 }).consume(k, rule, 1)).allowed)
  await redis.kill('SIGKILL')
  for (let i = 0; i < 3; i++) {
    const started = performance.now()
    const err = await store.consume(k, rule, 1).catch((e: unknown) => e)
    const took = performance.now() - started
    t.ok(err instanceof RateLimitStoreError, `rejected with a RateLimitStoreError (${(err as RateLimitStoreError).kind}) in ${took.toFixed(1)} ms`)
    t.ok(took < 50 + 250)
    await sleep(30)
  }
  await redis.restart() // resolves on Redis's first PONG: "Redis returning"
  const restarted = performance.now()
  let back = Infinity
  while (performance.now() - restarted < 3000) {
    if (await store.consume(k, rule, 1).then((d) => d.allowed, () => false)) {
      back = performance.now() - restarted
      break
    }
    await sleep(10)
  }
  t.ok(back < 1000, `deciding again ${back.toFixed(0)} ms after the restart`)
  t.same(unhandled, [])
})
