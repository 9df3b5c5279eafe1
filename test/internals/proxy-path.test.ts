// The proxy data path's per-request mechanics without a server where possible: header rules that
// never `delete`, plain route counters read by prom-client at scrape time, WRR picks during a slow
// start ramp and with most targets out, and (over real sockets) a finished request leaving nothing
// linked to it.
import t from 'tap'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import metrics from '../../plugins/metrics.js'
import loadBalancer from '../../plugins/load-balancer.js'
import { stripHopByHop, withoutHopByHop, type HeaderBag } from '../../lib/proxy/headers.js'
import { createProxyMetrics, DURATION_BUCKETS } from '../../lib/metrics/proxy-metrics.js'
import { UpstreamRegistry } from '../../lib/upstream/registry.js'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { WeightedRoundRobinBalancer } from '../../lib/balancers/index.js'
import type { Attempt } from '../../lib/proxy/attempt.js'
import { startUpstream, type UpstreamProcess } from '../helpers/upstream.js'
import { startGateway, get } from '../helpers/gateway.js'

t.test('request headers: hop-by-hop names are blanked in place, never deleted, and only when present', async (t) => {
  const h: HeaderBag = { host: 'x', connection: 'keep-alive, X-Drop', 'x-drop': '1', te: 'trailers', 'x-keep': 'k' }
  const keysBefore = Object.keys(h)
  t.equal(stripHopByHop(h), h, 'same object')
  t.same(Object.keys(h), keysBefore, 'no key removed')
  t.equal(h.connection, undefined)
  t.equal(h['x-drop'], undefined, 'named in Connection (case-insensitive)')
  t.equal(h.te, undefined)
  t.equal(h['x-keep'], 'k')
  t.notOk('upgrade' in h, 'absent names are not added')
})

t.test('response headers: same object when nothing to drop, else a copy without hop-by-hop ones', async (t) => {
  const clean: HeaderBag = { 'content-type': 'text/plain', 'content-length': '2' }
  t.equal(withoutHopByHop(clean), clean, 'nothing to drop: no copy')
  const dirty: HeaderBag = { 'content-type': 'text/plain', connection: 'keep-alive, x-hop', 'keep-alive': 'timeout=5', 'x-hop': '1', 'x-e2e': 'yes' }
  const out = withoutHopByHop(dirty)
  t.not(out, dirty)
  t.same(out, { 'content-type': 'text/plain', 'x-e2e': 'yes' })
  t.equal(dirty.connection, 'keep-alive, x-hop', 'the input is left alone')
})

t.test('route counters: plain numbers per request, exported under the same names and labels at scrape', async (t) => {
  const registry = new Registry()
  const m = createProxyMetrics(registry, new UpstreamRegistry())
  const r = m.forRoute('/api/*', 'users')
  t.equal(m.forRoute('/api/*', 'users'), r, 'one set of counters per (route, upstream)')
  r.record(200, 0.5) // 0.0005 s: first bucket
  r.record(204, 30) // 0.03 s
  r.record(503, 20_000) // above the last bound: +Inf only
  r.record(99, 1) // nonsense status: counted as 5xx
  const text = await registry.metrics()
  t.match(text, /proxy_requests_total\{route="\/api\/\*",upstream="users",status_class="2xx"\} 2/)
  t.match(text, /proxy_requests_total\{route="\/api\/\*",upstream="users",status_class="5xx"\} 2/)
  t.notMatch(text, /status_class="4xx"/, 'classes never seen are not exported')
  t.match(text, /proxy_request_duration_seconds_bucket\{le="0.001",route="\/api\/\*",upstream="users"\} 2/)
  t.match(text, /proxy_request_duration_seconds_bucket\{le="0.05",route="\/api\/\*",upstream="users"\} 3/, 'cumulative')
  t.match(text, /proxy_request_duration_seconds_bucket\{le="10",route="\/api\/\*",upstream="users"\} 3/)
  t.match(text, /proxy_request_duration_seconds_bucket\{le="\+Inf",route="\/api\/\*",upstream="users"\} 4/)
  t.match(text, /proxy_request_duration_seconds_count\{route="\/api\/\*",upstream="users"\} 4/)
  const sum = Number(/proxy_request_duration_seconds_sum\{route="\/api\/\*",upstream="users"\} ([\d.e-]+)/.exec(text)?.[1])
  t.ok(Math.abs(sum - 20.0315) < 1e-9, `sum ${sum}`)
  t.equal(DURATION_BUCKETS.length, 13)
  // a second scrape gives the same figures (collect resets, then copies)
  t.equal(await registry.metrics(), text)
})

function wrrPool (weights: number[], now: number): UpstreamPool {
  const pool = new UpstreamPool('w')
  weights.forEach((w, i) => { pool.add({ id: `t${i}`, url: `http://127.0.0.1:${20000 + i}`, weight: w }).status = 'healthy' })
  void now
  return pool
}

t.test('WRR during a slow-start ramp follows the ramp in 10 % steps', async (t) => {
  const NOW = 1_000_000
  const pool = wrrPool([1, 1], NOW)
  const b = pool.targets[1]
  b.slowStartFrom = NOW
  b.slowStartUntil = NOW + 10_000
  pool.touch(b)
  const wrr = new WeightedRoundRobinBalancer()
  const share = (now: number, n: number): number => {
    let hits = 0
    for (let i = 0; i < n; i++) if (wrr.pick(pool, { now })?.id === 't1') hits++
    return hits / n
  }
  t.ok(Math.abs(share(NOW, 1100) - 1 / 11) < 0.01, 'starts at 10 %')
  // 5 s in: 55 % of weight, rounded to 60 % (or 50 %): between 1/3 and 3/8 of picks
  const mid = share(NOW + 5_000, 1600)
  t.ok(mid > 0.33 && mid < 0.38, `halfway share ${mid}`)
  // 100 ms later the step would be the same: no visible change
  t.ok(Math.abs(share(NOW + 5_100, 1600) - mid) < 0.01)
  t.equal(share(NOW + 10_001, 400), 0.5, 'ramp over: the plain cycle')
})

t.test('WRR on 1,000 targets with 90 % drained: picks spread over the rest by weight', async (t) => {
  const NOW = 2_000_000
  const weights = Array.from({ length: 1000 }, (_, i) => 1 + (i % 10))
  const pool = wrrPool(weights, NOW)
  for (const x of pool.targets) if (x.index % 10 !== 0) { x.status = 'draining'; pool.touch(x) }
  const wrr = new WeightedRoundRobinBalancer()
  const counts = new Map<string, number>()
  // the 100 left all have weight 1: one cycle is 100 picks
  let wrong = 0
  for (let i = 0; i < 1000; i++) {
    const p = wrr.pick(pool, { now: NOW })
    if (p === undefined || p.index % 10 !== 0) { wrong++; continue }
    counts.set(p.id, (counts.get(p.id) ?? 0) + 1)
  }
  t.equal(wrong, 0, 'only routable targets are picked')
  t.equal(counts.size, 100)
  t.ok([...counts.values()].every((c) => c === 10), 'exactly even over whole cycles')
})

let up: UpstreamProcess
t.before(async () => { up = await startUpstream({ id: 'pp' }) })
t.teardown(async () => { await up.kill() })

t.test('a finished request leaves nothing linked to it: its tries drop owner, callback and listeners', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: up.url }] } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const seen: Attempt[] = []
  app.loadBalancer.on('attempt', (a: Attempt) => { seen.push(a) })
  for (let i = 0; i < 5; i++) t.equal((await get(`${url}/x?i=${i}`)).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(seen.length, 5)
  for (const a of seen) {
    t.equal(a.ended, true)
    t.equal(a.owner, undefined, 'no link to the request state')
    t.notOk(Object.values(a).some((v) => typeof v === 'function'), 'no link to undici or reply-from (the abort function is dropped)')
    t.equal(a.lease, undefined)
    t.equal(a.failover, undefined)
    t.equal(a.statusCode, 200, 'the outcome stays readable')
  }
  t.equal(app.loadBalancer.upstreams.get('u')!.pool.targets[0].inFlight, 0)
})

t.test('reply.proxy() twice on one request: the first answers, the upstream sees one request, no budget slot is kept', async (t) => {
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { logs.push(line) } } } })
  const logs: string[] = []
  t.teardown(() => app.close())
  await app.register(metrics, { defaultMetrics: false })
  await app.register(loadBalancer, { upstreams: { u: { targets: [{ id: 'a', url: up.url }] } } })
  app.get('/twice', { config: { upstream: 'u' } }, (_req, reply) => { reply.proxy(); return reply.proxy() })
  app.get('/after', { config: { upstream: 'u' } }, async (_req, reply) => {
    await reply.proxy()
    await new Promise((resolve) => setTimeout(resolve, 30)) // answered by then
    reply.proxy()
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const before = (await up.stats()).requests
  for (let i = 0; i < 3; i++) t.equal((await get(`${url}/twice`)).status, 200)
  t.equal((await get(`${url}/after`)).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.equal((await up.stats()).requests - before, 4, 'one upstream request per client request')
  const entry = app.loadBalancer.upstreams.get('u')!
  t.equal(app.loadBalancer.failover.get(entry).budget.active, 0, 'every retry-budget slot given back')
  t.equal(entry.pool.targets[0].inFlight, 0)
  t.equal(logs.filter((l) => l.includes('reply.proxy() called again')).length, 4, 'each second call is logged')
})

t.test('a small upstream answer already in goes out as one buffer; a large one, a HEAD and a slow one stream, bytes intact', async (t) => {
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(metrics, { defaultMetrics: false })
  await app.register(loadBalancer, { upstreams: { u: { targets: [{ id: 'a', url: up.url }] } } })
  const kinds: string[] = []
  app.addHook('onSend', async (_req, _reply, payload) => {
    kinds.push(Buffer.isBuffer(payload) ? 'buffer' : typeof (payload as { pipe?: unknown })?.pipe === 'function' ? 'stream' : typeof payload)
    return payload
  })
  app.route({ method: ['GET', 'HEAD'], url: '/*', exposeHeadRoute: false, config: { upstream: 'u' }, handler: (_req, reply) => reply.proxy() })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const small = await get(`${url}/echo?x=1`)
  t.equal(small.status, 200)
  t.match(small.body, { id: 'pp', url: '/echo?x=1' })
  t.equal(small.headers['content-length'], String(Buffer.byteLength(small.text)), 'Content-Length as the upstream declared it')
  t.equal(small.headers['x-upstream-id'], 'pp', 'upstream headers kept')
  const big = await get(`${url}/big/200000`)
  t.equal(big.status, 200)
  t.equal(big.text.length, 200_000)
  t.equal(big.headers['content-type'], 'application/octet-stream')
  const head = await get(`${url}/echo`, { method: 'HEAD' })
  t.equal(head.status, 200)
  const slow = await get(`${url}/slow/30`)
  t.equal(slow.status, 200)
  t.same(kinds.slice(0, 3), ['buffer', 'stream', 'stream'], 'small: one buffer; 200 KB and HEAD: streamed')
  t.equal(kinds.length, 4)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(app.loadBalancer.upstreams.get('u')!.pool.targets[0].inFlight, 0, 'every upstream request ended')
})

t.test('an upstream dying in the middle of a small body: the client gets a 502, not half a body; a large one is cut', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: up.url }] } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const small = await get(`${url}/truncate/2000`)
  t.equal(small.status, 502)
  t.match(small.body, { statusCode: 502, code: /^FHG_ERR_UPSTREAM/ })
  t.equal(small.headers['content-type'], 'application/json; charset=utf-8', 'none of the upstream\'s headers for the body that never came')
  // past the whole-body size the body streams: the status and half the body went out already, then the cut
  const big = await get(`${url}/truncate/100000`).then((r) => r.status, (err: Error) => err)
  t.ok(big instanceof Error || big === 200, `large body: ${String(big)}`)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(app.loadBalancer.upstreams.get('u')!.pool.targets[0].inFlight, 0, 'every upstream request ended')
  t.equal((await get(`${url}/echo`)).status, 200, 'the gateway serves on')
})
