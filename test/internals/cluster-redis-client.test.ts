// resolveRedisClient: the one rule by which the rate limiter and the cluster plugin choose their Redis client.
import t from 'tap'
import { once } from 'node:events'
import { duplicateFailFast, resolveRedisClient } from '../../lib/cluster/redis-client.js'
import { closeRedisConnection, createRedisConnection } from '../../lib/cluster/redis-connection.js'
import { startRedis } from '../helpers/redis.js'

t.test('resolveRedisClient', async (t) => {
  const redis = await startRedis()
  const a = createRedisConnection(redis.url)
  const b = createRedisConnection(redis.url)
  for (const c of [a, b]) if (c.status !== 'ready') await once(c, 'ready')
  t.teardown(async () => {
    await closeRedisConnection(a)
    await closeRedisConnection(b)
    await redis.stop()
  })

  const none = resolveRedisClient({})
  t.equal(none.client, undefined, 'nothing given: no Redis')
  t.equal(none.owned, false)
  await none.close()

  const first = resolveRedisClient({ existing: [undefined, { not: 'a client' }, a, b], config: redis.url })
  t.equal(first.client, a, 'the first ioredis client among the existing ones, in order')
  t.equal(first.owned, false)
  await first.close()
  t.equal(await a.ping(), 'PONG', 'close() leaves a client that is not ours open')

  const given = resolveRedisClient({ existing: [undefined], config: b })
  t.equal(given.client, b, 'a client as config: used as is')
  t.equal(given.owned, false)

  const own = resolveRedisClient({ existing: [undefined, 42], config: redis.url, connection: { commandTimeout: 777 } })
  t.equal(own.owned, true, 'a config: a connection of our own')
  t.not(own.client, undefined)
  t.equal((own.client!.options as { commandTimeout?: number }).commandTimeout, 777, 'with the connection options')
  if (own.client!.status !== 'ready') await once(own.client!, 'ready')
  t.equal(await own.client!.ping(), 'PONG')
  const ended = once(own.client!, 'end')
  await own.close()
  await ended
  t.equal(own.client!.status, 'end', 'close() closes ours')

  const dup = duplicateFailFast(a, 1234)
  t.not(dup, a)
  t.equal((dup.options as { commandTimeout?: number }).commandTimeout, 1234, 'the duplicate has its own deadline')
  t.equal((dup.options as { enableOfflineQueue?: boolean }).enableOfflineQueue, false, 'and fails fast')
  if (dup.status !== 'ready') await once(dup, 'ready')
  t.equal(await dup.ping(), 'PONG')
  await closeRedisConnection(dup)
})
