// The exactness test on the other Redis topologies: Redis Cluster (3 masters) and Sentinel (1 master, 1 replica, 3 sentinels),
// each gateway node connecting through the plugin's own `cluster.redis`-style config.
import t, { type Test } from 'tap'
import { startRedisCluster } from './helpers/redis.js'
import { startSentinelGroup } from './helpers/sentinel.js'
import { burst, redisReady, startNodes, tally } from './helpers/ratelimit-nodes.js'
import type { RedisConnectionConfig } from '../lib/cluster/redis-connection.js'

async function exactness (t: Test, redis: RedisConnectionConfig, name: string): Promise<void> {
  for (const algorithm of ['fixed_window', 'sliding_window', 'token_bucket'] as const) {
    const { nodes, close } = await startNodes(3, {
      // a deadline no loaded test machine reaches: a late answer would show as a 503 (fail_closed), not as a wrong count
      plugin: { redis, clusterName: `${name}-${algorithm}`, storeTimeout: 5000, onStoreError: 'fail_closed' },
      rateLimit: { algorithm, limit: 50, window: 3_600_000 },
    })
    try {
      await redisReady(nodes, 10_000)
      t.same(tally(await burst(nodes, '/r', 300)), { 200: 50, 429: 250 }, `${name}, ${algorithm}: exactly 50 of 300 pass`)
    } finally {
      await close()
    }
  }
}

t.test('Redis Cluster, 3 masters: exactly 50 of 300 pass over three nodes, every algorithm', async (t) => {
  const cluster = await startRedisCluster(3)
  t.teardown(async () => { await cluster.stop() })
  await exactness(t, { nodes: cluster.nodes }, 'cluster')
})

t.test('Sentinel (1 master, 1 replica, 3 sentinels): exactly 50 of 300 pass over three nodes, every algorithm', async (t) => {
  const group = await startSentinelGroup('rlmaster')
  t.teardown(async () => { await group.stop() })
  await exactness(t, group.config, 'sentinel')
})
