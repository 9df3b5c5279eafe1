import t from 'tap'
import { createRedisConnection, closeRedisConnection, type RedisClient } from '../../lib/cluster/redis-connection.js'
import { createClusterContext, type ClusterContext } from '../../lib/cluster/context.js'
import { StateManager } from '../../lib/cluster/state-store.js'
import { DistributedCache } from '../../lib/cluster/cache.js'
import { LruMap } from '../../lib/cluster/lru.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

// generous deadlines: the test machine is shared and slow, the code under test is not timed here
const SLOW = { commandTimeout: 1000 }

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

t.test('state and cache on one redis-server', async (t) => {
  const redis = await startRedis()
  const made: Array<{ client: RedisClient, ctx: ClusterContext, close: () => Promise<void> }> = []
  const node = async (name: string): Promise<{ client: RedisClient, ctx: ClusterContext }> => {
    const client = createRedisConnection(redis.url, SLOW)
    const ctx = createClusterContext({ client, timeout: 1500, name })
    made.push({ client, ctx, close: async () => { await ctx.close(); await closeRedisConnection(client) } })
    await until(() => ctx.link.up, 3000, 'condition', 5)
    return { client, ctx }
  }
  t.teardown(async () => {
    for (const m of made) await m.close()
    await redis.stop()
  })

  await t.test('state: CRUD, TTL and listing by prefix', async (t) => {
    const a = new StateManager((await node('st')).ctx)
    const { ctx: ctxB, client } = await node('st')
    const b = new StateManager(ctxB)
    t.equal(await a.get('missing'), undefined)
    await a.set('users:1', { name: 'ann' })
    t.same(await b.get('users:1'), { name: 'ann' }, 'another node reads it')
    t.equal(await client.get('st:state:users:1'), '{"name":"ann"}', 'key format')
    await b.set('users:1', { name: 'bob' })
    t.same(await a.get('users:1'), { name: 'bob' })
    await a.set('users:2', 2)
    await a.set('users*[x]', 'glob chars are literal')
    await a.set('orders:1', [1])
    t.same(await b.list('users:'), [{ key: 'users:1', value: { name: 'bob' } }, { key: 'users:2', value: 2 }])
    t.same(await b.list('users*'), [{ key: 'users*[x]', value: 'glob chars are literal' }])
    t.equal((await b.list()).length, 4)
    t.equal((await b.list('', 2)).length, 2, 'limit')
    await a.set('temp', 'x', 100)
    const pttl = await client.pttl('st:state:temp')
    t.ok(pttl > 0 && pttl <= 100, 'ttl in ms')
    t.equal(await a.delete('users:2'), true)
    t.equal(await a.delete('users:2'), false)
    t.equal(await b.get('users:2'), undefined)
    await until(async () => await a.get('temp') === undefined, 2000, 'condition', 5)
    t.pass('expired')
    await t.rejects(a.set('bad', undefined), TypeError)
  })

  await t.test('cache: invalidation reaches the other node and the version rule holds', async (t) => {
    const na = await node('c')
    const nb = await node('c')
    const a = new DistributedCache(na.ctx)
    const b = new DistributedCache(nb.ctx)
    a.start()
    b.start()
    await until(() => na.ctx.pubsub.connected && nb.ctx.pubsub.connected, 3000, 'condition', 5)
    t.teardown(async () => { await a.close(); await b.close() })

    t.equal(await b.get('k'), undefined, 'miss')
    const v1 = await a.set('k', { n: 1 }, 10_000)
    t.ok(typeof v1 === 'number' && v1 > 0)
    t.same(await b.getEntry('k'), { value: { n: 1 }, version: v1 }, 'B reads it from Redis, then holds it locally')
    const v2 = await a.set('k', { n: 2 }, 10_000)
    t.ok(v2! > v1!, 'versions only grow')
    const ms = await until(() => b.seenVersion('k') === v2, 1000, 'condition', 1)
    t.comment(`invalidation reached B after ~${ms} ms`)
    t.same(await b.getEntry('k'), { value: { n: 2 }, version: v2 }, 'the old local value is a miss: B re-reads')

    await t.test('a node never serves a version older than one it was told about', async (t) => {
      // B holds v2 locally; tell B about a newer version while Redis still has v2 (as a lagging replica would)
      await na.client.publish('c:cache:inv', JSON.stringify({ k: 'k', v: String(v2! + 1) }))
      await until(() => b.seenVersion('k') === v2! + 1, 1000, 'condition', 1)
      t.equal(await b.get('k'), undefined, 'neither the local v2 nor the v2 in Redis is served')
      const v3 = await a.set('k', { n: 3 }, 10_000)
      t.ok(v3! > v2! + 1, 'the next write is newer than anything announced (µs clock floor)')
      await until(() => b.seenVersion('k') === v3, 1000, 'condition', 1)
      t.same(await b.get('k'), { n: 3 })
    })

    await t.test('delete invalidates everywhere', async (t) => {
      await b.get('k')
      const vd = await a.delete('k')
      await until(() => b.seenVersion('k') === vd, 1000, 'condition', 1)
      t.equal(await b.get('k'), undefined)
      t.equal(await a.get('k'), undefined)
    })

    await t.test('entries are local after the first read (no Redis call)', async (t) => {
      await a.set('hot', 'x', 10_000)
      t.equal(await b.get('hot'), 'x')
      // remove the Redis copy behind B's back: B still serves its local (newest known) value
      const keys = await nb.client.keys('c:cache:*')
      await nb.client.del(...keys)
      t.equal(await b.get('hot'), 'x')
    })

    await t.test('Redis down: get serves local entries or misses, set resolves undefined, nothing throws', async (t) => {
      await a.set('warm', 'w', 10_000)
      await redis.kill('SIGKILL')
      t.equal(await a.get('warm'), 'w', 'local copy')
      t.equal(await a.get('cold'), undefined, 'a miss, not an error')
      t.equal(await a.set('cold', 1, 1000), undefined)
      await redis.restart()
      await until(() => na.ctx.link.up && nb.ctx.link.up && na.ctx.pubsub.connected && nb.ctx.pubsub.connected, 5000, 'condition', 5)
      t.equal(await a.get('warm'), undefined, 'local values are dropped after the subscriber reconnects (invalidations may be lost)')
      const v = await a.set('after', 1, 1000)
      await until(() => b.seenVersion('after') === v, 1000, 'condition', 1)
      t.pass('invalidations flow again')
    })
  })
})

t.test('without Redis: in-memory twins', async (t) => {
  const ctx = createClusterContext({ name: 'mem' })
  const s = new StateManager(ctx)
  await s.set('a:1', 1)
  await s.set('a:2', 2, 30)
  await s.set('b:1', 3)
  t.same(await s.list('a:'), [{ key: 'a:1', value: 1 }, { key: 'a:2', value: 2 }])
  await sleep(50)
  t.same(await s.list('a:'), [{ key: 'a:1', value: 1 }], 'ttl')
  t.equal(await s.delete('b:1'), true)
  t.equal(await s.get('b:1'), undefined)

  const c = new DistributedCache(ctx, { maxEntries: 2 })
  c.start()
  const v1 = await c.set('x', 1, 1000)
  const v2 = await c.set('x', 2, 1000)
  t.ok(v2! > v1!)
  t.equal(await c.get('x'), 2)
  await c.set('y', 1, 1000)
  await c.set('z', 1, 1000)
  t.equal(await c.get('x'), undefined, 'bounded: the least recently used entry is evicted')
  await c.set('short', 1, 20)
  await sleep(40)
  t.equal(await c.get('short'), undefined, 'ttl')
})

t.test('LruMap', async (t) => {
  const m = new LruMap<number>(2)
  m.set('a', 1)
  m.set('b', 2)
  m.get('a')
  m.set('c', 3)
  t.equal(m.peek('b'), undefined, 'b was least recently used')
  t.equal(m.peek('a'), 1)
  t.equal(m.size, 2)
  t.throws(() => new LruMap(0))
})
