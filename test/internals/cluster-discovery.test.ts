import t from 'tap'
import { createRedisConnection, closeRedisConnection } from '../../lib/cluster/redis-connection.js'
import { createClusterContext } from '../../lib/cluster/context.js'
import { RedisDiscovery, StaticDiscovery, registerService, type ServiceInstance } from '../../lib/cluster/discovery.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

// generous deadlines: the test machine is shared and slow, the code under test is not timed here
const SLOW = { commandTimeout: 1000 }

t.test('redis discovery', async (t) => {
  const redis = await startRedis()
  const client = createRedisConnection(redis.url, SLOW)
  const ctx = createClusterContext({ client, timeout: 1500, name: 'disc' })
  const discovery = new RedisDiscovery(ctx, { interval: 200 })
  const svcClient = createRedisConnection(redis.url, SLOW)
  t.teardown(async () => {
    await discovery.close()
    await ctx.close()
    await closeRedisConnection(client)
    await closeRedisConnection(svcClient)
    await redis.stop()
  })

  let latest: ServiceInstance[] | undefined
  const updates: number[] = []
  discovery.watch('users', (list) => { latest = list; updates.push(list.length) })
  await until(() => latest !== undefined && ctx.pubsub.connected, 3000, 'condition', 5)
  t.same(latest, [], 'an unknown service has no instances')

  await t.test('a Node service registers with the helper, and stops', async (t) => {
    const reg = registerService({ redis: svcClient, cluster: 'disc', service: 'users', id: 'users-1', url: 'http://127.0.0.1:3001', weight: 2, metadata: { zone: 'a' }, ttl: 600 })
    await reg.registered
    await until(() => latest?.length === 1, 1000, 'condition', 5)
    t.same(latest, [{ id: 'users-1', url: 'http://127.0.0.1:3001', weight: 2, metadata: { zone: 'a' } }])
    t.same(await discovery.list('users'), latest)
    // heartbeats keep it alive past its TTL
    await new Promise((resolve) => setTimeout(resolve, 1000))
    t.equal(latest?.length, 1, 'still registered after more than one TTL')
    const start = Date.now()
    await reg.stop()
    await until(() => latest?.length === 0, 1000, 'condition', 5)
    t.comment(`deregistration seen after ${Date.now() - start} ms`)
    t.same(await discovery.list('users'), [])
  })

  await t.test('any language registers with the documented key format; dropped when its TTL lapses', async (t) => {
    const entry = JSON.stringify({ id: 'users-9', url: 'http://127.0.0.1:3009' })
    const start = Date.now()
    await svcClient.set('disc:svc:{users}:users-9', entry, 'PX', 500)
    await svcClient.zadd('disc:svc:{users}', Date.now() + 500, 'users-9')
    // no PUBLISH: the poll (one interval) finds it
    await until(() => latest?.length === 1, 1000, 'condition', 5)
    t.comment(`direct registration seen after ${Date.now() - start} ms (interval 200 ms)`)
    t.equal(latest![0].id, 'users-9')
    const gone = await until(() => latest?.length === 0, 2000, 'condition', 5)
    t.comment(`expired instance dropped ${Date.now() - start} ms after its write (ttl 500 ms)`)
    t.ok(gone < 2000)
    // a malformed entry and one whose id does not match its key are ignored
    await svcClient.set('disc:svc:{users}:bad', 'not json', 'PX', 5000)
    await svcClient.set('disc:svc:{users}:liar', JSON.stringify({ id: 'users-1', url: 'http://x' }), 'PX', 5000)
    await svcClient.zadd('disc:svc:{users}', Date.now() + 5000, 'bad', Date.now() + 5000, 'liar')
    t.same(await discovery.list('users'), [])
  })

  await t.test('watchers added later get the current list; Redis down keeps the last list', async (t) => {
    const reg = registerService({ redis: svcClient, cluster: 'disc', service: 'orders', id: 'o-1', url: 'http://127.0.0.1:4001', ttl: 600 })
    await reg.registered
    let first: ServiceInstance[] | undefined
    discovery.watch('orders', (l) => { first = l })
    await until(() => first?.length === 1, 1000, 'condition', 5)
    let second: ServiceInstance[] | undefined
    const unwatch = discovery.watch('orders', (l) => { second = l })
    await until(() => second !== undefined, 500, 'condition', 5)
    t.same(second, first)
    unwatch()
    await redis.kill('SIGKILL')
    await until(() => !ctx.link.up, 2000, 'condition', 5)
    await new Promise((resolve) => setTimeout(resolve, 800))
    t.equal(first?.length, 1, 'the last known instances stay while Redis is down')
    await redis.restart()
    // Redis came back empty; the service's heartbeat registers it again
    await until(() => ctx.link.up, 3000, 'condition', 5)
    let listed: ServiceInstance[] = []
    // the registrant's client reconnects on its own backoff first (seconds under a loaded CI machine)
    for (const end = Date.now() + 10_000; listed.length === 0 && Date.now() < end;) {
      listed = await discovery.list('orders').catch(() => [])
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    t.same(listed, first, 'the registrant re-registers on its own')
    await reg.stop()
    await until(() => first?.length === 0, 2000, 'condition', 5)
  })
})

t.test('static discovery', async (t) => {
  const d = new StaticDiscovery({ users: [{ id: 'b', url: 'http://127.0.0.1:2' }, { id: 'a', url: 'http://127.0.0.1:1' }, { id: 'bad', url: 'ftp://x' }] })
  t.same((await d.list('users')).map((i) => i.id), ['a', 'b'], 'sorted, invalid urls dropped')
  const got: string[][] = []
  d.watch('users', (l) => got.push(l.map((i) => i.id)))
  await new Promise((resolve) => setImmediate(resolve))
  d.set('users', [{ id: 'c', url: 'http://127.0.0.1:3' }])
  t.same(got, [['a', 'b'], ['c']])
  t.same(await d.list('none'), [])
  await d.close()
})
