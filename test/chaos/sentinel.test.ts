// Chaos, Sentinel (issue 15): three full gateway nodes (in this process) on a Sentinel group under load; the master
// is SIGKILLed. Requests keep being served (fail_open while no master), limits are exact on the promoted replica,
// and the membership is whole again.
import t from 'tap'
import { startNode } from '../../plugins/gateway.js'
import { validateConfig } from '../../lib/config/index.js'
import { startSentinelGroup } from '../helpers/sentinel.js'
import { startUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/poll.js'
import { admin, byStatus, load, pct, TOKEN } from '../helpers/chaos.js'

const LIMIT = 30
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

t.test('Sentinel master SIGKILL under load', async (t) => {
  const group = await startSentinelGroup('chaosmaster')
  t.teardown(async () => { await group.stop() })
  const upstream = await startUpstream({ id: 'chaos-sentinel-up' })
  t.teardown(async () => { await upstream.kill() })
  const nodes = await Promise.all(['a', 'b', 'c'].map(async (id) => {
    const n = await startNode(validateConfig({
      node: { id: `s-${id}`, host: '127.0.0.1', port: 0 },
      cluster: { name: 'chaos-sentinel', redis: group.config, heartbeatInterval: 500 },
      upstreams: { api: { targets: [{ id: 'up', url: upstream.url }] } },
      routes: [{ path: '/api', upstream: 'api', rateLimit: { algorithm: 'sliding_window', limit: LIMIT, window: '1h', key: 'header:x-client' } }],
      admin: { token: TOKEN },
    }))
    t.teardown(async () => { await n.close() })
    return n
  }))
  const urls = nodes.map((n) => n.address)
  await until(() => nodes.every((n) => n.app.cluster.nodes().length === 3), 20_000, 'three nodes in every view', 50)
  const bg = load(() => urls, '/api/x', 6, undefined, () => ({ 'x-client': `bg-${Math.floor(Math.random() * 1e6)}` }))
  await sleep(500)
  const old = group.master.port
  await group.master.kill('SIGKILL')
  const killedAt = performance.now()
  await until(async () => await group.masterPort() !== old, 20_000, 'sentinel switched master', 100)
  const switched = performance.now() - killedAt
  await until(() => nodes.every((n) => n.app.cluster.nodes().length === 3), 20_000, 'three nodes in every view again', 50)
  const whole = performance.now() - killedAt
  await sleep(1000)
  const hits = await bg.stop()
  // exact on the promoted replica: one fresh client over the three nodes
  let exact: Record<string, number> = {}
  await until(async () => {
    exact = {}
    const name = `after-${Math.random()}`
    for (let i = 0; i < LIMIT + 6; i++) {
      const r = await admin(urls[i % 3], '/api/x', 'GET', undefined, { 'x-client': name })
      exact[r.status] = (exact[r.status] ?? 0) + 1
    }
    return exact[200] === LIMIT && exact[429] === 6
  }, 10_000, 'exact on the promoted replica', 100)
  const ms = hits.map((h) => h.ms)
  t.comment(`Sentinel master SIGKILL: switch after ${switched.toFixed(0)} ms, membership whole after ${whole.toFixed(0)} ms; ${hits.length} requests ${JSON.stringify(byStatus(hits))}, p99 ${pct(ms, 99).toFixed(0)} ms, slowest ${Math.max(...ms).toFixed(0)} ms; after: ${JSON.stringify(exact)}`)
  t.same(byStatus(hits), { 200: hits.length }, 'every request under load served (fail_open while no master)')
  t.same(exact, { 200: LIMIT, 429: 6 }, 'exact on the promoted replica')
})
