// The scripts on a real Redis Cluster of 3 masters: one slot per script call, exact counts, the deadline, NOSCRIPT.
import t from 'tap'
import { Cluster } from 'ioredis'
import { once } from 'node:events'
import { startRedisCluster } from '../helpers/redis.js'
import { RedisStore } from '../../lib/ratelimit/redis-store.js'
import { RateLimitStoreError } from '../../lib/ratelimit/deadline.js'
import { keyBuilder } from '../../lib/ratelimit/key.js'
import { ALGORITHMS, type LimitRule } from '../../lib/ratelimit/types.js'

const cluster = await startRedisCluster(3)
t.teardown(() => cluster.stop())

async function client (): Promise<Cluster> {
  const c = new Cluster(cluster.nodes, { scaleReads: 'master' })
  c.on('error', () => {})
  t.teardown(() => { c.disconnect() })
  await once(c, 'ready')
  return c
}
const admin = await client()
const keyOf = (i: number): string => keyBuilder('api-gateway-cluster:rl:', '/users', i % 2)(`client-${i}`)

/** Client port of the master serving `key`. */
async function ownerPort (key: string): Promise<number> {
  const slot = await admin.cluster('KEYSLOT', key) as number
  const slots = await admin.cluster('SLOTS')
  return slots.find(([from, to]) => slot >= from && slot <= to)![2][1]
}

t.test('one client\'s keys share a slot (hash tag); clients spread over every master', async (t) => {
  const build0 = keyBuilder('api-gateway-cluster:rl:', '/users', 0)
  const build1 = keyBuilder('api-gateway-cluster:rl:', '/orders', 1)
  const slots = new Set<number>()
  for (const suffix of [':fw', ':sw', ':tb']) {
    slots.add(await admin.cluster('KEYSLOT', build0('10.0.0.1') + suffix) as number)
    slots.add(await admin.cluster('KEYSLOT', build1('10.0.0.1') + suffix) as number)
  }
  t.equal(slots.size, 1, 'every rule and algorithm of 10.0.0.1 in one slot')
  const owners = new Set<number>()
  for (let i = 0; i < 60; i++) owners.add(await ownerPort(keyOf(i)))
  t.equal(owners.size, 3, '60 clients land on all 3 masters')
})

t.test('300 concurrent consumes from 3 cluster clients against a limit of 50 admit exactly 50', async (t) => {
  const stores = await Promise.all([client(), client(), client()]).then((cs) => cs.map((c) => new RedisStore({ client: c, timeout: 2000 })))
  for (const algorithm of ALGORITHMS) {
    const rule: LimitRule = { algorithm, limit: 50, window: algorithm === 'token_bucket' ? 600_000 : 3_600_000 }
    for (const i of [1, 2, 3]) {
      const k = keyOf(i * 7 + ALGORITHMS.indexOf(algorithm))
      const ds = await Promise.all(Array.from({ length: 300 }, async (_, j) => await stores[j % 3].consume(k, rule, 1)))
      t.equal(ds.filter((d) => d.allowed).length, 50, `${algorithm}, key on master :${await ownerPort(k)}: exactly 50`)
    }
  }
})

t.test('NOSCRIPT on every master (as after a failover): consumes go on', async (t) => {
  const store = new RedisStore({ client: await client(), timeout: 2000 })
  const rule: LimitRule = { algorithm: 'token_bucket', limit: 10, window: 600_000 }
  const k = keyOf(101)
  t.equal((await store.consume(k, rule, 1)).remaining, 9)
  await Promise.all(admin.nodes('master').map(async (n) => await n.script('FLUSH')))
  t.equal((await store.consume(k, rule, 1)).remaining, 8)
})

t.test('a hung master (SIGSTOP): consumes on its slots reject at the deadline; other masters keep answering', async (t) => {
  const c = new Cluster(cluster.nodes, { scaleReads: 'master', redisOptions: { commandTimeout: 200 } })
  c.on('error', () => {})
  t.teardown(() => { c.disconnect() })
  await once(c, 'ready')
  const store = new RedisStore({ client: c, timeout: 50 })
  const rule: LimitRule = { algorithm: 'sliding_window', limit: 100, window: 60_000 }
  const hung = keyOf(201)
  const port = await ownerPort(hung)
  let other = 202
  while (await ownerPort(keyOf(other)) === port) other++
  // Same client, a deadline that tolerates this shared machine's stalls: warm-up, and the other master's check
  const patient = new RedisStore({ client: c, timeout: 1000 })
  t.ok((await patient.consume(hung, rule, 1)).allowed)
  t.ok((await patient.consume(keyOf(other), rule, 1)).allowed)
  await cluster.kill(cluster.ports.indexOf(port), 'SIGSTOP')
  try {
    const started = performance.now()
    const err = await store.consume(hung, rule, 1).catch((e: unknown) => e)
    const took = performance.now() - started
    t.ok(err instanceof RateLimitStoreError && err.kind === 'timeout', 'typed timeout')
    t.ok(took < 50 + 250, `rejected after ${took.toFixed(0)} ms (deadline 50; the client's own retries would take longer)`)
    t.ok((await patient.consume(keyOf(other), rule, 1)).allowed, 'a key on another master is still decided')
  } finally {
    await cluster.kill(cluster.ports.indexOf(port), 'SIGCONT')
  }
  let ok = false
  for (let i = 0; i < 100 && !ok; i++) {
    ok = await store.consume(hung, rule, 1).then((d) => d.allowed, () => false)
    if (!ok) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.ok(ok, 'decided again once the master resumes')
})
