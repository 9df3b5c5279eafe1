// Chaos, standalone Redis (issue 15): three full gateway nodes (plugins/gateway.ts startNode, in this process) under
// load while Redis is SIGKILLed (then restarted) or SIGSTOPped (then SIGCONTed), policy local. No request waits
// > 500 ms; during the outage a client gets at most limit ÷ 3 on a node; exact again within 2 s of Redis returning;
// a config PUT during the outage is refused (503, never silently lost), and one made after it reaches every node.
import t from 'tap'
import { startNode } from '../../plugins/gateway.js'
import { validateConfig } from '../../lib/config/index.js'
import { startRedis } from '../helpers/redis.js'
import { startUpstream } from '../helpers/upstream.js'
import { until } from '../helpers/poll.js'
import { admin, byStatus, load, pct, TOKEN } from '../helpers/chaos.js'

const LIMIT = 30
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const redis = await startRedis()
const upstream = await startUpstream({ id: 'chaos-outage-up' })
t.teardown(async () => { await redis.kill('SIGCONT').catch(() => {}); await redis.stop(); await upstream.kill() })

const shared = (tag: string): Record<string, unknown> => ({
  upstreams: { api: { targets: [{ id: tag, url: upstream.url }] } },
  routes: [{ path: '/api', upstream: 'api', rateLimit: { algorithm: 'fixed_window', limit: LIMIT, window: '1h', key: 'header:x-client' } }],
  rateLimit: { onStoreError: 'local' },
})

/** `n` requests of one client over `urls`: the statuses. */
async function client (urls: string[], name: string, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const r = await admin(urls[i % urls.length], '/api/x', 'GET', undefined, { 'x-client': name })
    out[r.status] = (out[r.status] ?? 0) + 1
  }
  return out
}

let seq = 0
for (const fault of ['SIGKILL', 'SIGSTOP'] as const) {
  t.test(`Redis ${fault} under load, policy local, three nodes`, async (t) => {
    const cluster = `chaos-outage-${++seq}`
    const nodes = await Promise.all(['a', 'b', 'c'].map(async (id) => {
      const n = await startNode(validateConfig({
        node: { id: `${cluster}-${id}`, host: '127.0.0.1', port: 0 },
        cluster: { name: cluster, redis: redis.url, heartbeatInterval: 500 },
        ...shared('v1'),
        admin: { token: TOKEN },
      }))
      t.teardown(async () => { await n.close() })
      return n
    }))
    const urls = nodes.map((n) => n.address)
    await until(() => nodes.every((n) => n.app.cluster.nodes().length === 3), 15_000, 'three nodes in every view', 50)
    t.same(await client(urls, 'before', LIMIT + 6), { 200: LIMIT, 429: 6 }, 'before: exact over three nodes')

    const bg = load(() => urls, '/api/x', 6, undefined, () => ({ 'x-client': `bg-${Math.floor(Math.random() * 1e6)}` }))
    await sleep(300)
    const v = nodes[0].app.cluster.config.version
    const faultAt = Date.now()
    await redis.kill(fault)
    await sleep(600)
    const during = await client([urls[0]], 'during', LIMIT)
    const put = await admin(urls[1], '/gateway/config', 'PUT', shared('during'), { 'if-match': String(v) })
    await sleep(400)
    if (fault === 'SIGKILL') await redis.restart()
    else await redis.kill('SIGCONT')
    const backAt = Date.now()
    // exact again: a fresh client's full budget over the three nodes, decided in Redis (RateLimit r = LIMIT - 1)
    let k = 0
    const exactMs = await until(async () => {
      const rs = await Promise.all(urls.map(async (u) => await admin(u, '/api/x', 'GET', undefined, { 'x-client': `probe-${k++}` })))
      return rs.every((r) => new RegExp(`;r=${LIMIT - 1};`).test(String(r.headers.ratelimit ?? '')))
    }, 5000, 'Redis decides again on every node', 20).then(() => Date.now() - backAt)
    const after = await client(urls, 'after', LIMIT + 6)
    const hits = await bg.stop()
    const inOutage = hits.filter((h) => h.at >= faultAt && h.at <= backAt)
    const ms = hits.map((h) => h.ms)
    const cur = await admin(urls[2], '/gateway/config')
    const put2 = await admin(urls[2], '/gateway/config', 'PUT', shared('after'), { 'if-match': String(cur.body.version) })
    t.equal(put2.status, 200, `a PUT after the outage is accepted: ${JSON.stringify(put2.body).slice(0, 300)}`)
    const arrived = await until(() => nodes.every((n) => n.app.cluster.config.version === put2.body.version), 5000, 'the PUT after the outage reaches every node', 10)
    t.comment(`Redis ${fault}: ${hits.length} requests under load ${JSON.stringify(byStatus(hits))} (${inOutage.length} during the outage ${JSON.stringify(byStatus(inOutage))}), p99 ${pct(ms, 99).toFixed(0)} ms, slowest ${Math.max(...ms).toFixed(0)} ms; ` +
      `one client on one node during the outage ${JSON.stringify(during)} (local share ${Math.floor(LIMIT / 3)}); PUT during the outage ${put.status}; ` +
      `store deciding on every node ${exactMs} ms after Redis returned; after: ${JSON.stringify(after)}; a PUT after the outage reached all three in ${arrived.toFixed(0)} ms`)
    // SIGSTOP holds it too: slowest 76 ms alone, 89 ms beside three busy loops, 187 ms beside six (2 cores); an
    // earlier 646 ms was a load average of ~20 from whole test suites run beside it, not the outage
    t.ok(Math.max(...ms) < 500, `no request waited 500 ms (slowest ${Math.max(...ms).toFixed(0)} ms)`)
    t.same(byStatus(inOutage), { 200: inOutage.length }, 'load of fresh clients served throughout (local: within their share)')
    t.same(during, { 200: Math.floor(LIMIT / 3), 429: LIMIT - Math.floor(LIMIT / 3) }, 'local: limit ÷ 3 live nodes on one node')
    t.equal(put.status, 503, 'a config PUT during the outage is refused, not accepted and lost')
    t.ok(exactMs <= 2000, `limits decided in Redis again within 2 s (${exactMs} ms)`)
    t.same(after, { 200: LIMIT, 429: 6 }, 'after: exact over three nodes')
    for (const n of nodes) t.equal(n.app.cluster.config.version, put2.body.version, 'every node runs the version written after the outage')
  })
}
