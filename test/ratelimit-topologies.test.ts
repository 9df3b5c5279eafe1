// The exactness test on the other Redis topologies: Redis Cluster (3 masters) and Sentinel (1 master, 3 sentinels),
// each gateway node connecting through the plugin's own `cluster.redis`-style config.
import t, { type Test } from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRedis, startRedisCluster } from './helpers/redis.js'
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

t.test('Sentinel (1 master, 3 sentinels): exactly 50 of 300 pass over three nodes, every algorithm', async (t) => {
  const master = await startRedis()
  t.teardown(async () => { await master.stop() })
  const sentinels = await Promise.all([0, 1, 2].map(async () => await startSentinel(master.port)))
  t.teardown(async () => { for (const s of sentinels) await s.stop() })
  await exactness(t, { sentinels: sentinels.map((s) => ({ host: '127.0.0.1', port: s.port })), name: 'rlmaster' }, 'sentinel')
})

/** One sentinel watching `masterPort` as `rlmaster`, with its own writable config file (Sentinel rewrites it). */
async function startSentinel (masterPort: number): Promise<{ port: number, stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'fhg-rl-sentinel-'))
  const port = await freePort()
  const conf = join(dir, 'sentinel.conf')
  writeFileSync(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor rlmaster 127.0.0.1 ${masterPort} 2`,
    'sentinel down-after-milliseconds rlmaster 1000', 'sentinel failover-timeout rlmaster 5000', ''].join('\n'))
  const child: ChildProcess = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
  process.once('exit', () => child.kill('SIGKILL'))
  const until = Date.now() + 5000
  while (!await answers(port)) {
    if (child.exitCode !== null || Date.now() > until) throw new Error(`sentinel on ${port} did not start`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  return {
    port,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit')
        child.kill('SIGKILL')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function answers (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => { s.end(); resolve(true) })
    s.on('error', () => resolve(false))
  })
}

async function freePort (): Promise<number> {
  const srv = createServer()
  srv.listen(0, '127.0.0.1')
  await once(srv, 'listening')
  const { port } = srv.address() as { port: number }
  srv.close()
  await once(srv, 'close')
  return port
}
