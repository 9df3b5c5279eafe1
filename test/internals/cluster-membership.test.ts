import t from 'tap'
import { createRedisConnection, closeRedisConnection, type RedisClient } from '../../lib/cluster/redis-connection.js'
import { createClusterContext, type ClusterContext } from '../../lib/cluster/context.js'
import { Membership, type NodeInfo } from '../../lib/cluster/membership.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

// generous deadlines: the test machine is shared and slow, the code under test is not timed here
const SLOW = { commandTimeout: 1000 }

interface Node { client: RedisClient, ctx: ClusterContext, m: Membership }

const ids = (m: Membership): string[] => m.nodes().map((n) => n.id)

t.test('membership over one redis-server', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const nodes: Node[] = []
  const make = (id: string, heartbeatInterval: number, name = 'gw-test'): Node => {
    const client = createRedisConnection(redis.url, SLOW)
    const ctx = createClusterContext({ client, timeout: 1500, name })
    const m = new Membership(ctx, { self: { id, address: '127.0.0.1', port: 8000 + nodes.length, version: '0.1.0' }, heartbeatInterval })
    const n = { client, ctx, m }
    nodes.push(n)
    return n
  }
  t.teardown(async () => {
    for (const n of nodes) {
      await n.m.close()
      await n.ctx.close()
      await closeRedisConnection(n.client)
    }
  })

  await t.test('three nodes see each other', async (t) => {
    const [a, b, c] = ['a', 'b', 'c'].map((id) => make(id, 300))
    const joins: string[] = []
    a.m.on('join', (n: NodeInfo) => joins.push(n.id))
    for (const n of [a, b, c]) n.m.start()
    await until(() => [a, b, c].every((n) => n.m.size === 3), 5000)
    t.same(ids(a.m), ['a', 'b', 'c'])
    t.same(ids(b.m), ['b', 'a', 'c'], 'self first, then the others by id')
    t.same(joins.sort(), ['b', 'c'])
    const bAsSeenByA = a.m.nodes().find((n) => n.id === 'b')!
    t.match(bAsSeenByA, { id: 'b', address: '127.0.0.1', version: '0.1.0', configVersion: 0, status: 'ok' })
    t.type(bAsSeenByA.lastSeen, 'number')
    t.type(bAsSeenByA.startedAt, 'number')

    await t.test('update() is carried by the next heartbeat', async (t) => {
      b.m.update({ configVersion: 7, status: 'draining' })
      await until(() => a.m.nodes().find((n) => n.id === 'b')?.configVersion === 7, 3000)
      t.equal(a.m.nodes().find((n) => n.id === 'b')!.status, 'draining')
    })

    await t.test('a stopped (not left) node leaves every view within the TTL', async (t) => {
      const left: string[] = []
      a.m.on('leave', (n: NodeInfo, reason: string) => left.push(`${n.id}:${reason}`))
      const stoppedAt = Date.now()
      await c.m.close() // no leave(): as if the process had been SIGKILLed
      await until(() => a.m.size === 2 && b.m.size === 2, 10_000)
      const elapsed = Date.now() - stoppedAt
      t.comment(`stopped node dropped after ${elapsed} ms (ttl ${a.m.ttl} ms, interval 300 ms)`)
      // key TTL + one read interval, with slack for a loaded machine
      t.ok(elapsed <= a.m.ttl + 300 + 1500, `gone within the TTL (+ one interval): ${elapsed} ms`)
      t.same(left, ['c:expired'])
    })
  })

  await t.test('leave() removes a node at once, a join is seen at once', async (t) => {
    // a long interval (TTL 9 s) so only the pub/sub announcements can explain a fast update
    const [x, y] = ['x', 'y'].map((id) => make(id, 3000, 'gw-leave'))
    x.m.start()
    await until(() => x.m.size === 1 && x.ctx.pubsub.connected, 3000)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const joinStart = Date.now()
    y.m.start()
    const joinMs = await until(() => x.m.size === 2, 2500, 'condition', 2)
    t.comment(`join seen by the other node after ${Date.now() - joinStart} ms`)
    t.ok(joinMs < 2500)
    await until(() => y.m.size === 2, 3000)
    const reasons: string[] = []
    x.m.on('leave', (_n: NodeInfo, reason: string) => reasons.push(reason))
    const leaveStart = Date.now()
    await y.m.leave()
    const ms = await until(() => x.m.size === 1, 2000, 'condition', 2)
    t.comment(`leave() seen after ${Date.now() - leaveStart} ms (pub/sub; the TTL is 9 s)`)
    t.ok(ms < 2000)
    t.same(reasons, ['left'])
    t.equal(await x.client.exists('gw-leave:{nodes}:y'), 0, 'the entry key is deleted')
    await new Promise((resolve) => setTimeout(resolve, 300))
    t.equal(x.m.size, 1, 'a listing in flight does not bring the departed node back')
  })

  await t.test('with Redis killed: no throw, report down, and rejoin after restart', async (t) => {
    const [p, q] = ['p', 'q'].map((id) => make(id, 200, 'gw-outage'))
    const events: string[] = []
    p.ctx.link.on('down', () => events.push('down'))
    p.ctx.link.on('up', () => events.push('up'))
    p.m.start()
    q.m.start()
    await until(() => p.m.size === 2 && q.m.size === 2, 5000)
    t.equal(p.ctx.link.up, true)
    // also the nodes of the earlier subtests: all must survive the outage
    await redis.kill('SIGKILL')
    await until(() => !p.ctx.link.up, 3000)
    await until(() => p.m.size === 1 && q.m.size === 1, 5000)
    t.same(ids(p.m), ['p'], 'the view decays to the node itself')
    await p.m.refresh() // a heartbeat while down resolves
    await redis.restart()
    await until(() => p.m.size === 2 && q.m.size === 2, 8000)
    t.ok(p.ctx.link.up, 'reported up again')
    t.same(events, ['up', 'down', 'up'])
  })
})

t.test('without Redis the view is this node alone', async (t) => {
  const ctx = createClusterContext({ name: 'alone' })
  const m = new Membership(ctx, { self: { id: 'solo', address: '127.0.0.1', port: 1, version: '1' }, heartbeatInterval: 100 })
  m.start()
  await m.refresh()
  t.same(ids(m), ['solo'])
  t.equal(m.size, 1)
  await m.leave()
  await ctx.close()
})

t.test('a node booted while Redis is down joins once Redis appears', async (t) => {
  const redis = await startRedis()
  const port = redis.port
  await redis.kill('SIGKILL')
  t.teardown(() => redis.stop())
  const client = createRedisConnection(`redis://127.0.0.1:${port}`, SLOW)
  const ctx = createClusterContext({ client, timeout: 1500, name: 'late' })
  const m = new Membership(ctx, { self: { id: 'late-1', address: '127.0.0.1', port: 1, version: '1' }, heartbeatInterval: 200 })
  m.start()
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(m.size, 1)
  const other = createRedisConnection(`redis://127.0.0.1:${port}`, SLOW)
  const ctx2 = createClusterContext({ client: other, timeout: 1500, name: 'late' })
  const m2 = new Membership(ctx2, { self: { id: 'late-2', address: '127.0.0.1', port: 2, version: '1' }, heartbeatInterval: 200 })
  m2.start()
  await redis.restart()
  await until(() => m.size === 2 && m2.size === 2, 8000)
  t.pass('both joined')
  for (const [mm, c, cl] of [[m, ctx, client], [m2, ctx2, other]] as const) {
    await mm.leave()
    await c.close()
    await closeRedisConnection(cl)
  }
})
