// The same components on a real 3-master Redis Cluster: scripts and MGETs stay in one slot, SCAN visits every master.
import t from 'tap'
import { createRedisConnection, closeRedisConnection, type RedisClient } from '../../lib/cluster/redis-connection.js'
import { createClusterContext, type ClusterContext } from '../../lib/cluster/context.js'
import { Membership } from '../../lib/cluster/membership.js'
import { ClusterConfigManager, ConfigConflictError } from '../../lib/cluster/config-store.js'
import { StateManager } from '../../lib/cluster/state-store.js'
import { DistributedCache } from '../../lib/cluster/cache.js'
import { RedisDiscovery, registerService, type ServiceInstance } from '../../lib/cluster/discovery.js'
import { HealthHints, type HealthHint } from '../../lib/cluster/health-hints.js'
import { startRedisCluster } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

// generous deadlines: the test machine is shared and slow, the code under test is not timed here
const SLOW = { commandTimeout: 1000 }

t.test('cluster core on Redis Cluster', async (t) => {
  const rc = await startRedisCluster(3)
  const made: Array<{ client: RedisClient, ctx: ClusterContext }> = []
  const node = (): { client: RedisClient, ctx: ClusterContext } => {
    const client = createRedisConnection({ nodes: rc.nodes }, SLOW)
    const ctx = createClusterContext({ client, timeout: 1500, name: 'rc' })
    made.push({ client, ctx })
    return { client, ctx }
  }
  const a = node()
  const b = node()
  const closers: Array<() => Promise<void>> = []
  t.teardown(async () => {
    for (const c of closers) await c()
    for (const m of made) { await m.ctx.close(); await closeRedisConnection(m.client) }
    await rc.stop()
  })
  await until(() => a.ctx.link.up && b.ctx.link.up, 5000, 'condition', 5)

  await t.test('membership', async (t) => {
    const ma = new Membership(a.ctx, { self: { id: 'a', address: '127.0.0.1', port: 1, version: '1' }, heartbeatInterval: 200 })
    const mb = new Membership(b.ctx, { self: { id: 'b', address: '127.0.0.1', port: 2, version: '1' }, heartbeatInterval: 200 })
    closers.push(() => ma.close(), () => mb.close())
    ma.start()
    mb.start()
    await until(() => ma.size === 2 && mb.size === 2, 5000, 'condition', 5)
    await mb.leave()
    await until(() => ma.size === 1, 2000, 'condition', 5)
    t.pass('join and leave')
  })

  await t.test('config compare-and-set and watch', async (t) => {
    const ca = new ClusterConfigManager<{ n: number }>(a.ctx, { interval: 500 })
    const cb = new ClusterConfigManager<{ n: number }>(b.ctx, { interval: 500 })
    closers.push(() => ca.close(), () => cb.close())
    ca.start()
    cb.start()
    let seen = 0
    cb.watch((d) => { seen = d.config.n })
    t.equal(await ca.seedIfEmpty({ n: 1 }), true)
    const d2 = await ca.put({ n: 2 }, 1)
    await until(() => seen === 2, 2000, 'condition', 5)
    await t.rejects(ca.put({ n: 3 }, 1), ConfigConflictError)
    t.equal(d2.version, 2)
  })

  await t.test('state listing scans every master', async (t) => {
    const s = new StateManager(a.ctx)
    for (let i = 0; i < 30; i++) await s.set(`k:${i}`, i)
    const all = await new StateManager(b.ctx).list('k:')
    t.equal(all.length, 30)
    const perMaster = await Promise.all(rc.ports.map(async (port) => {
      const c = createRedisConnection(`redis://127.0.0.1:${port}`, SLOW)
      await until(() => c.status === 'ready', 2000, 'condition', 5)
      const n = (await c.keys('rc:state:k:*')).length
      await closeRedisConnection(c)
      return n
    }))
    t.ok(perMaster.filter((n) => n > 0).length >= 2, `keys spread over masters: ${perMaster.join('/')}`)
  })

  await t.test('cache invalidation, discovery and health hints', async (t) => {
    const xa = new DistributedCache(a.ctx)
    const xb = new DistributedCache(b.ctx)
    xa.start()
    xb.start()
    closers.push(() => xa.close(), () => xb.close())
    const ha = new HealthHints(a.ctx, { nodeId: 'a' })
    const hb = new HealthHints(b.ctx, { nodeId: 'b' })
    ha.start()
    hb.start()
    const hints: HealthHint[] = []
    hb.onHint((h) => hints.push(h))
    const d = new RedisDiscovery(b.ctx, { interval: 200 })
    closers.push(() => d.close())
    let inst: ServiceInstance[] = []
    d.watch('svc', (l) => { inst = l })
    await until(() => a.ctx.pubsub.connected && b.ctx.pubsub.connected, 5000, 'condition', 5)

    await xa.set('k', 1, 10_000)
    t.equal(await xb.get('k'), 1)
    const v = await xa.set('k', 2, 10_000)
    await until(() => xb.seenVersion('k') === v, 2000, 'condition', 5)
    t.equal(await xb.get('k'), 2)

    await ha.publish({ upstream: 'u', target: 't', kind: 'ejected', until: Date.now() + 1000 })
    await until(() => hints.length === 1, 2000, 'condition', 5)

    const reg = registerService({ redis: a.client, cluster: 'rc', service: 'svc', id: 's1', url: 'http://127.0.0.1:9', ttl: 600 })
    closers.push(() => reg.stop())
    await until(() => inst.length === 1, 2000, 'condition', 5)
    t.pass('all three over cluster pub/sub')
  })
})
