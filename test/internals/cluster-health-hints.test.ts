import t from 'tap'
import { createRedisConnection, closeRedisConnection } from '../../lib/cluster/redis-connection.js'
import { createClusterContext } from '../../lib/cluster/context.js'
import { HealthHints, applyHint, type HealthHint } from '../../lib/cluster/health-hints.js'
import { Target } from '../../lib/upstream/target.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

// generous deadlines: the test machine is shared and slow, the code under test is not timed here
const SLOW = { commandTimeout: 1000 }

t.test('health hints between two nodes', async (t) => {
  const redis = await startRedis()
  const mk = (id: string): { hints: HealthHints, close: () => Promise<void>, ctx: ReturnType<typeof createClusterContext> } => {
    const client = createRedisConnection(redis.url, SLOW)
    const ctx = createClusterContext({ client, timeout: 1500, name: 'hh' })
    const hints = new HealthHints(ctx, { nodeId: id, maxTtl: 10_000 })
    hints.start()
    return { hints, ctx, close: async () => { await hints.close(); await ctx.close(); await closeRedisConnection(client) } }
  }
  const a = mk('gw-a')
  const b = mk('gw-b')
  t.teardown(async () => { await a.close(); await b.close(); await redis.stop() })
  await until(() => a.ctx.pubsub.connected && b.ctx.pubsub.connected && a.ctx.link.up, 3000, 'condition', 1)

  const onA: HealthHint[] = []
  const onB: Array<HealthHint & { at: number }> = []
  a.hints.onHint((h) => onA.push(h))
  b.hints.onHint((h) => onB.push({ ...h, at: performance.now() }))

  const lat: number[] = []
  for (let i = 0; i < 20; i++) {
    const start = performance.now()
    t.equal(await a.hints.publish({ upstream: 'users', target: `users-${i}`, kind: i % 2 === 0 ? 'ejected' : 'circuit_open', until: Date.now() + 5000 }), true)
    await until(() => onB.length === i + 1, 1000, 'condition', 1)
    lat.push(onB[i].at - start)
  }
  lat.sort((x, y) => x - y)
  t.comment(`hint A -> B over 20 hints: p50 ${lat[9].toFixed(2)} ms, max ${lat[19].toFixed(2)} ms`)
  t.ok(lat[19] < 100, 'every hint within 100 ms')
  t.match(onB[0], { upstream: 'users', target: 'users-0', kind: 'ejected', from: 'gw-a' })
  t.ok(onB[0].until > Date.now() + 3000 && onB[0].until <= Date.now() + 5000, 'expiry by the receiver\'s clock')
  t.equal(onB[1].kind, 'circuit_open')
  t.equal(onA.length, 0, 'a node does not hear its own hints')

  await t.test('expired hints are not sent; a long one is capped by maxTtl', async (t) => {
    t.equal(await a.hints.publish({ upstream: 'u', target: 't', kind: 'ejected', until: Date.now() - 1 }), false)
    const n = onB.length
    await a.hints.publish({ upstream: 'u', target: 'long', kind: 'ejected', until: Date.now() + 3_600_000 })
    await until(() => onB.length === n + 1, 1000, 'condition', 1)
    t.ok(onB[n].until <= Date.now() + 10_000, 'capped at maxTtl')
  })

  await t.test('malformed messages are ignored', async (t) => {
    const n = onB.length
    const raw = createRedisConnection(redis.url, SLOW)
    await until(() => raw.status === 'ready', 2000, 'condition', 1)
    await raw.publish('hh:health', 'garbage')
    await raw.publish('hh:health', JSON.stringify({ upstream: 'u', target: 't', kind: 'healthy', ttl: 100, from: 'x' }))
    await raw.publish('hh:health', JSON.stringify({ upstream: 'u', target: 't', kind: 'ejected', ttl: 100, from: 'x' }))
    await until(() => onB.length === n + 1, 1000, 'condition', 1)
    t.equal(onB[n].from, 'x')
    await closeRedisConnection(raw)
  })
})

t.test('applyHint only ever keeps a target out longer', async (t) => {
  const target = new Target({ id: 't1', url: 'http://127.0.0.1:1' })
  const now = Date.now()
  const hint = (until: number): HealthHint => ({ upstream: 'u', target: 't1', kind: 'ejected', until, from: 'x' })
  t.equal(applyHint(target, hint(now + 1000), now), true)
  t.equal(target.ejectedUntil, now + 1000)
  t.equal(target.isEligible(now + 10), false)
  t.equal(applyHint(target, hint(now + 500), now), false, 'never shortens an ejection (never re-admits)')
  t.equal(target.ejectedUntil, now + 1000)
  t.equal(applyHint(target, hint(now - 1), now), false, 'an expired hint does nothing')
  t.equal(target.isEligible(now + 1001), true, 'eligible again after the expiry')
})

t.test('without Redis publish is a no-op', async (t) => {
  const hints = new HealthHints(createClusterContext({ name: 'x' }), { nodeId: 'n' })
  hints.start()
  t.equal(await hints.publish({ upstream: 'u', target: 't', kind: 'ejected', until: Date.now() + 1000 }), false)
  await hints.close()
})
