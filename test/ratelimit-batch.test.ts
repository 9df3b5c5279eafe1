// One script call per event-loop turn (RedisStore batches) and lease prefetch: fewer Redis calls, same decisions.
import t from 'tap'
import { Redis } from 'ioredis'
import { startRedis } from './helpers/redis.js'
import { excess, type Admission } from './helpers/ratelimit-bounds.js'
import { RedisStore } from '../lib/ratelimit/redis-store.js'
import { LeaseStore } from '../lib/ratelimit/lease-store.js'
import { MemoryStore } from '../lib/ratelimit/memory-store.js'
import { SCRIPTS, parsePacked } from '../lib/ratelimit/scripts/index.js'
import { LUA_NOW } from '../lib/ratelimit/scripts/clock.js'
import { EPOCH_MS, type GrantSource } from '../lib/ratelimit/grant.js'
import { ALGORITHMS, type LimitRule } from '../lib/ratelimit/types.js'

const redis = await startRedis()
t.teardown(() => redis.stop())
const admin = new Redis(redis.port, '127.0.0.1')
t.teardown(() => { admin.disconnect() })
let seq = 0
const key = (): string => `batch-test:${++seq}:{c${seq}}`

/** Script calls Redis served so far (EVAL + EVALSHA). */
async function scriptCalls (): Promise<number> {
  const info = await admin.info('commandstats')
  let n = 0
  for (const m of info.matchAll(/^cmdstat_(?:eval|evalsha):calls=(\d+)/gm)) n += Number(m[1])
  return n
}

t.test('packed replies parse to the numbers Lua printed', async (t) => {
  t.same(parsePacked('1 99 60000 0 1 28393', []), [1, 99, 60000, 0, 1, 28393])
  t.same(parsePacked('0 -5 12 1.5 3e2 7', []), [0, -5, 12, 1.5, 300, 7])
  t.same(parsePacked('', []), [])
})

t.test('the decisions of one turn leave as one script call per algorithm, each request keeps its own answer', async (t) => {
  const client = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => { client.disconnect() })
  const store = new RedisStore({ client, timeout: 2000 })
  await store.consume(key(), { algorithm: 'fixed_window', limit: 1, window: 1000 }, 1) // connect, load the scripts
  for (const algorithm of ALGORITHMS) {
    const rule: LimitRule = { algorithm, limit: 10, window: 3_600_000 }
    const k = key()
    const before = await scriptCalls()
    const calls = store.calls
    const ds = await Promise.all(Array.from({ length: 15 }, async () => await store.consume(k, rule, 1)))
    t.equal(store.calls - calls, 1, `${algorithm}: 15 decisions, one script call`)
    t.equal(await scriptCalls() - before, 1, `${algorithm}: Redis served one script call`)
    t.same(ds.map((d) => d.allowed), [...Array(10).fill(true), ...Array(5).fill(false)], 'in order: the first 10 pass')
    t.same(ds.slice(0, 10).map((d) => d.remaining), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0], 'each sees the spends before it')
    t.ok(ds.slice(10).every((d) => d.retryAfterMs > 0 && d.limit === 10))
  }
  // three algorithms and many keys in one turn: one call per algorithm
  const calls = store.calls
  const rules = ALGORITHMS.map((algorithm) => ({ algorithm, limit: 3, window: 60_000 }))
  const keys = Array.from({ length: 20 }, () => key())
  const ds = await Promise.all(keys.flatMap((k) => rules.map(async (r) => await store.consume(k, r, 2))))
  t.equal(store.calls - calls, 3, '60 decisions over 20 keys and 3 algorithms: 3 calls')
  t.ok(ds.every((d) => d.allowed && d.remaining === 1))
  t.equal(store.decisions, 1 + 3 * 15 + 60)
})

t.test('one batch call answers and writes exactly what the same decisions answer one call each (keys named many times, refunds)', async (t) => {
  let x = 7
  const rnd = (): number => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648 }
  for (const algorithm of ALGORITHMS) {
    for (let round = 0; round < 20; round++) {
      // one clock for both runs: the batch reads TIME once, so the sequential calls get the same instant
      const at = 86_400_000 * 30 + Math.floor(rnd() * 1e9) + Math.round(rnd() * 1000) / 1000
      // TTLs left out: they run on Redis's real clock (a TTL of a few ms would expire between the two reads)
      const lua = SCRIPTS[algorithm].lua.replace(LUA_NOW, `\nlocal now = ${at}\n`)
        .replace("redis.call('SET', key, s.tat, 'PX', s.px)", "redis.call('SET', key, s.tat)").replace("redis.call('PEXPIRE', key,", '-- no TTL (')
      const window = [1000, 60_000][round % 2]
      const epochNow = Math.floor(at / window)
      const ops = Array.from({ length: 12 }, () => {
        const k = Math.floor(rnd() * 3)
        const limit = 5 + Math.floor(rnd() * 5)
        const r = rnd()
        if (r < 0.2) return { k, args: [limit, window, -(1 + Math.floor(rnd() * 3)), 0, epochNow - (rnd() < 0.3 ? 1 : 0)] }
        const want = Math.floor(rnd() * 4)
        return { k, args: [limit, window, want, r < 0.6 ? want : Math.floor(rnd() * (want + 1)), 0] }
      })
      // state left by an earlier window, so rolls and refunds into the previous window happen
      const seqKeys = [0, 1, 2].map((i) => `seq:${algorithm}:${round}:{${i}}`)
      const batKeys = [0, 1, 2].map((i) => `bat:${algorithm}:${round}:{${i}}`)
      if (algorithm !== 'token_bucket') {
        for (const keys of [seqKeys, batKeys]) await admin.hset(keys[0], 'w', epochNow - 1, 'c', 4, ...(algorithm === 'sliding_window' ? ['p', 2] : []))
      }
      const seq: number[] = []
      for (const op of ops) seq.push(...await admin.eval(lua, 1, seqKeys[op.k], ...op.args) as number[])
      const packed = await admin.eval(lua, ops.length, ...ops.map((op) => batKeys[op.k]), ops.map((op) => op.args.join(' ')).join(' ')) as string
      t.same(parsePacked(packed, []), seq, `${algorithm} round ${round}: same answers`)
      for (let i = 0; i < 3; i++) {
        const read = async (k: string): Promise<unknown> => algorithm === 'token_bucket' ? await admin.get(k) : await admin.hgetall(k)
        t.same(await read(batKeys[i]), await read(seqKeys[i]), `${algorithm} round ${round} key ${i}: same state`)
      }
    }
  }
})

t.test('a batch never grows past maxBatch, and the classic one-key call still answers an array', async (t) => {
  const client = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => { client.disconnect() })
  const store = new RedisStore({ client, timeout: 2000, maxBatch: 4 })
  const rule: LimitRule = { algorithm: 'sliding_window', limit: 100, window: 60_000 }
  const k = key()
  const ds = await Promise.all(Array.from({ length: 10 }, async () => await store.consume(k, rule, 1)))
  t.equal(store.calls, 3, '10 decisions, batches of at most 4')
  t.same(ds.map((d) => d.remaining), [99, 98, 97, 96, 95, 94, 93, 92, 91, 90])
  const reply = await admin.eval(SCRIPTS.sliding_window.lua, 1, k + ':sw', 100, 60_000, 1, 1, 0) as number[]
  t.same(reply.slice(0, 2), [1, 89], 'EVAL with 5 separate arguments: an array of 6')
  t.equal(reply.length, 6)
})

t.test('one deadline per batch: a hung Redis rejects every decision of the turn at the deadline', async (t) => {
  const r2 = await startRedis()
  t.teardown(() => r2.stop())
  const client = new Redis(r2.port, '127.0.0.1', { maxRetriesPerRequest: 0 })
  client.on('error', () => {})
  t.teardown(() => { client.disconnect() })
  const store = new RedisStore({ client, timeout: 60 })
  const rule: LimitRule = { algorithm: 'token_bucket', limit: 100, window: 60_000 }
  t.ok((await new RedisStore({ client, timeout: 2000 }).consume('hung:{a}', rule, 1)).allowed)
  await r2.kill('SIGSTOP')
  try {
    const started = performance.now()
    const rs = await Promise.allSettled(Array.from({ length: 30 }, async () => await store.consume('hung:{a}', rule, 1)))
    const took = performance.now() - started
    t.ok(rs.every((r) => r.status === 'rejected' && (r.reason as { kind?: string }).kind === 'timeout'), '30 of 30 rejected as timeouts')
    t.ok(took >= 55 && took < 60 + 250, `after ${took.toFixed(0)} ms (deadline 60)`)
  } finally {
    await r2.kill('SIGCONT')
  }
  t.ok((await store.consume('hung:{a}', rule, 1)).allowed, 'works again once Redis resumes')
})

/** A MemoryStore as the shared store with an injected clock; counts take() calls. */
function shared () {
  const clock = { now: EPOCH_MS + 86_400_000 }
  const source = new MemoryStore({ now: () => clock.now })
  let takes = 0
  const counted: GrantSource = {
    take: async (k, r, want, min) => { takes++; return await source.take(k, r, want, min) },
    refund: async (k, r, units, epoch) => { await source.refund(k, r, units, epoch) },
  }
  return { clock, source, counted, takes: () => takes }
}

t.test('lease prefetch: a hot key fetches its next units before the slice is empty, and holds at most one slice', async (t) => {
  const s = shared()
  t.teardown(() => s.source.close())
  const node = new LeaseStore({ source: s.counted, leaseSize: 8, prefetch: 0.25, now: () => s.clock.now })
  t.teardown(() => node.close())
  const rule: LimitRule = { algorithm: 'sliding_window', limit: 1000, window: 60_000 }
  t.equal(node.consumeNow('k', rule, 1), undefined, 'no lease yet: the first request goes to the store')
  t.ok((await node.consume('k', rule, 1)).allowed)
  let waited = 0
  for (let i = 0; i < 100; i++) {
    const d = node.consumeNow('k', rule, 1)
    if (d === undefined) { waited++; await node.consume('k', rule, 1) } else t.ok(d.allowed)
    await Promise.resolve() // a prefetch lands between requests, as a Redis reply would between turns
    await Promise.resolve()
  }
  t.equal(waited, 0, '100 requests, none waited for a slice')
  const takes = s.takes()
  t.ok(takes >= 101 / 8 && takes <= Math.ceil(101 / 6) + 1, `${takes} store calls for 101 units (slice 8, refilled at 2 left)`)
  // held: never more than one slice, so the over-admission bound is unchanged
  const left = (await s.source.take('k', rule, 0, 0)).remaining
  const held = 1000 - left - 101
  t.ok(held >= 0 && held <= 8, `${held} units held by the node (slice 8)`)
})

for (const algorithm of ALGORITHMS) {
  t.test(`${algorithm}: 3 prefetching lease nodes under random traffic stay within nodes * slice of the exact guarantee`, async (t) => {
    for (const seed of [31, 32, 33]) {
      let x = seed
      const rnd = (): number => { x = (x * 1103515245 + 12345) % 2147483648; return x / 2147483648 }
      const s = shared()
      const slice = 4
      const nodes = Array.from({ length: 3 }, () => new LeaseStore({ source: s.counted, leaseSize: slice, leaseTtl: 1000, prefetch: 0.5, now: () => s.clock.now }))
      const rule: LimitRule = { algorithm, limit: 20, window: 1000 }
      const admitted: Admission[] = []
      for (let i = 0; i < 1500; i++) {
        s.clock.now += rnd() < 0.1 ? rnd() * 400 : rnd() * 6
        const burst = rnd() < 0.2 ? 1 + Math.floor(rnd() * 8) : 1
        const ds = await Promise.all(Array.from({ length: burst }, async () => await nodes[Math.floor(rnd() * 3)].consume('k', rule, 1)))
        for (const d of ds) if (d.allowed) admitted.push({ at: s.clock.now - EPOCH_MS, cost: 1 })
      }
      const over = excess(rule, admitted)
      const bound = algorithm === 'fixed_window' ? 0 : 3 * slice
      t.ok(over <= bound + 1e-9, `seed ${seed}: ${admitted.length} admitted, excess ${over.toFixed(2)} <= ${bound}`)
      for (const n of nodes) await n.close()
      await s.source.close()
    }
  })
}
