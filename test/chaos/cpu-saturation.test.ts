// CPU saturation beside the gateway (issue 15): three busy-loop processes on this 2-core machine while three
// nodes share one healthy Redis. Late event loops must not turn timely Redis answers into store errors:
// exactly 50 of 300 pass, for every algorithm, every run. Assertions are on counts, never on timings.
import t from 'tap'
import { startRedis } from '../helpers/redis.js'
import { burst, redisReady, startNodes, tally } from '../helpers/ratelimit-nodes.js'
import { busyLoops, pct } from '../helpers/chaos.js'
import { until } from '../helpers/poll.js'
import { startNode } from '../../plugins/gateway.js'
import { validateConfig } from '../../lib/config/index.js'

const RUNS = Number(process.env.CHAOS_CPU_RUNS ?? 3)

const redis = await startRedis()
t.teardown(async () => { await redis.stop() })

/** A metric's value summed over its label sets, from a node's /metrics text. */
async function metric (app: { inject: (o: { url: string }) => Promise<{ body: string }> }, name: string, label = ''): Promise<number> {
  const text = (await app.inject({ url: '/metrics' })).body
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(name) && line.includes(label) && !line.startsWith('#')) sum += Number(line.split(' ').pop())
  return sum
}

let seq = 0
for (const algorithm of ['fixed_window', 'sliding_window', 'token_bucket'] as const) {
  t.test(`${algorithm}: CPU saturated by 3 busy loops, Redis healthy: exactly 50 of 300 over 3 nodes, ${RUNS} runs`, async (t) => {
    const busy = busyLoops(3)
    t.teardown(busy.stop)
    for (let run = 0; run < RUNS; run++) {
      // default deadline (50 ms) and policy (fail_open): the settings that let 167 through on a busy machine
      const { nodes, close } = await startNodes(3, {
        plugin: { redis: redis.url, clusterName: `cpu-${++seq}` },
        rateLimit: { algorithm, limit: 50, window: 3_600_000, key: 'route' },
      })
      await redisReady(nodes, 15_000)
      const answers = await burst(nodes, '/r', 300)
      const errors = (await Promise.all(nodes.map(async (n) => await metric(n.app, 'ratelimit_store_errors_total')))).reduce((a, b) => a + b, 0)
      const open = (await Promise.all(nodes.map(async (n) => await metric(n.app, 'ratelimit_decisions_total', 'decision="error_open"')))).reduce((a, b) => a + b, 0)
      const late = (await Promise.all(nodes.map(async (n) => await metric(n.app, 'ratelimit_store_late_decisions_total')))).reduce((a, b) => a + b, 0)
      const slowest = Math.max(...answers.map((a) => Number(a.headers['x-server-ms'])))
      t.comment(`${algorithm} run ${run + 1}: ${JSON.stringify(tally(answers))}; store errors ${errors}, error_open decisions ${open}, late decisions ${late}; slowest server-side answer ${slowest.toFixed(0)} ms`)
      t.same(tally(answers), { 200: 50, 429: 250 }, `run ${run + 1}: exactly 50 pass`)
      await close()
    }
  })
}

t.test('config propagation with the CPU saturated: every PUT reaches every node, p99 under 500 ms', async (t) => {
  const busy = busyLoops(3)
  t.teardown(busy.stop)
  const nodes = await Promise.all(['a', 'b', 'c'].map(async (id) => {
    const n = await startNode(validateConfig({
      node: { id: `cpu-${id}`, host: '127.0.0.1', port: 0 },
      cluster: { name: 'cpu-config', redis: redis.url, heartbeatInterval: 500 },
      upstreams: { api: { targets: [{ id: 'v0', url: 'http://127.0.0.1:9' }] } },
      routes: [{ path: '/api', upstream: 'api' }],
    }))
    t.teardown(async () => { await n.close() })
    return n
  }))
  await until(() => nodes.every((n) => n.app.cluster.nodes().length === 3), 20_000, 'three nodes in every view', 50)
  const took: number[] = []
  for (let i = 1; i <= 20; i++) {
    const from = nodes[i % 3].app.cluster.config
    const t0 = performance.now()
    const res = await from.put({ upstreams: { api: { targets: [{ id: `v${i}`, url: 'http://127.0.0.1:9' }] } }, routes: [{ path: '/api', upstream: 'api' }] } as never, from.version)
    await until(() => nodes.every((n) => n.app.cluster.config.version >= res.version), 10_000, `v${res.version} everywhere`, 2)
    took.push(performance.now() - t0)
  }
  t.comment(`config PUT to applied on all 3 nodes, CPU saturated, 20 PUTs: p50 ${pct(took, 50).toFixed(0)} ms, p99 ${pct(took, 99).toFixed(0)} ms, max ${Math.max(...took).toFixed(0)} ms (goal p99 < 500 ms)`)
  t.equal(took.length, 20, 'all 20 versions reached every node')
  // 2-core machine: p99 89 ms beside the three busy loops, 97-131 ms beside six (another test file's load on top)
  t.ok(pct(took, 99) < 500, `config propagation p99 under 500 ms with the CPU saturated (${pct(took, 99).toFixed(0)} ms)`)
})
