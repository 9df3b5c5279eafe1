// PubSub: a channel subscribed while the first SUBSCRIBE is still in flight is subscribed too, and its owner is
// told (onResubscribed) once it is, since messages before that were lost.
import t from 'tap'
import { Redis } from 'ioredis'
import { PubSub } from '../../lib/cluster/pubsub.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

t.test('channels added during the first SUBSCRIBE are subscribed, and isSubscribed tells when', async (t) => {
  const redis = await startRedis()
  const client = new Redis(redis.url)
  const pub = new Redis(redis.url)
  const ps = new PubSub(client)
  t.teardown(async () => { await ps.close(); client.disconnect(); pub.disconnect(); await redis.stop() })

  const got: string[] = []
  let told = 0
  ps.onResubscribed(() => { told++ })
  ps.subscribe('first', (m) => got.push(`first:${m}`))
  // right after the connection's 'ready' (PubSub's own listener sent SUBSCRIBE first, no answer yet)
  const sub = (ps as unknown as { sub: Redis }).sub
  sub.once('ready', () => { ps.subscribe('second', (m) => got.push(`second:${m}`)) })
  await until(() => ps.connected, 5000, 'connected', 5)
  ps.subscribe('third', (m) => got.push(`third:${m}`))
  await until(() => ps.isSubscribed('first') && ps.isSubscribed('second') && ps.isSubscribed('third'), 5000, 'every channel confirmed', 5)
  t.ok(told >= 2, `onResubscribed ran after the first batch and again once the late channel was in (${told})`)
  for (const c of ['first', 'second', 'third']) await pub.publish(c, 'x')
  await until(() => got.length === 3, 2000, 'three messages', 5)
  t.same(got.sort(), ['first:x', 'second:x', 'third:x'])
  t.equal(ps.isSubscribed('nope'), false)
})
