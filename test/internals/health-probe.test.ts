import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { Agent } from 'undici'
import { Target } from '../../lib/upstream/target.js'
import { createHttpProbe } from '../../lib/health/probe-http.js'
import { createTcpProbe } from '../../lib/health/probe-tcp.js'
import { statusMatcher } from '../../lib/health/probe.js'
import { startHealthUpstream } from '../helpers/health-upstream.js'

/** A port nothing listens on: bind one, note it, close it. */
async function deadPort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as net.AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return port
}

t.test('statusMatcher: codes and inclusive ranges, default 200-399', async (t) => {
  const def = statusMatcher()
  t.ok(def(200)); t.ok(def(399)); t.notOk(def(400)); t.notOk(def(199)); t.notOk(def(-1)); t.notOk(def(999))
  const m = statusMatcher([204, [300, 302]])
  t.same([200, 204, 300, 302, 303].map(m), [false, true, true, true, false])
  t.throws(() => statusMatcher([[400, 300]]), { code: 'FHG_ERR_INVALID_CONFIG' })
  t.throws(() => statusMatcher([42]), { code: 'FHG_ERR_INVALID_CONFIG' })
})

t.test('http probe: status, path, method, Host header, expected statuses', async (t) => {
  const up = await startHealthUpstream({ probePath: '/healthz' })
  const agent = new Agent({ pipelining: 1 })
  t.teardown(async () => { await up.close(); await agent.close() })
  const target = new Target({ id: 'a', url: up.url + '/api/v1' })

  const probe = createHttpProbe({ path: '/healthz', timeout: 1000 }, agent)
  const ok = await probe(target)
  t.match(ok, { ok: true, status: 200 })
  t.ok(ok.durationMs >= 0)
  t.equal(up.hits.get('/healthz'), 1, 'probe path is absolute on the origin')

  up.probe = 503
  t.match(await probe(target), { ok: false, status: 503, error: 'status 503' })

  const lenient = createHttpProbe({ path: '/healthz', timeout: 1000, expectedStatuses: [[200, 299], 503] }, agent)
  t.match(await lenient(target), { ok: true, status: 503 })

  up.probe = 200
  const head = createHttpProbe({ method: 'head', path: '/healthz', host: 'users.internal', timeout: 1000 }, agent)
  t.match(await head(target), { ok: true, status: 200 })

  t.throws(() => createHttpProbe({ path: 'health', timeout: 10 }, agent), { code: 'FHG_ERR_INVALID_CONFIG' })
})

t.test('http probe: Host header is sent', async (t) => {
  const hosts: string[] = []
  const agent = new Agent({ pipelining: 1 })
  t.teardown(async () => { await agent.close() })
  const s = http.createServer((req, res) => { hosts.push(req.headers.host ?? ''); res.end() })
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { s.closeAllConnections(); s.close() })
  const port = (s.address() as net.AddressInfo).port
  const target = new Target({ id: 'h', url: `http://127.0.0.1:${port}` })
  t.match(await createHttpProbe({ host: 'users.internal', timeout: 1000 }, agent)(target), { ok: true })
  t.match(await createHttpProbe({ timeout: 1000 }, agent)(target), { ok: true })
  t.same(hosts, ['users.internal', `127.0.0.1:${port}`])
})

t.test('http probe: timeout on a hanging target, refused on a dead port, abort by the caller', async (t) => {
  const up = await startHealthUpstream()
  const agent = new Agent({ pipelining: 1 })
  t.teardown(async () => { await up.close(); await agent.destroy() })
  up.probe = 'hang'
  const probe = createHttpProbe({ timeout: 150 }, agent)
  const hung = await probe(new Target({ id: 'a', url: up.url }))
  t.match(hung, { ok: false, error: 'timeout after 150ms' })
  t.ok(hung.durationMs >= 140 && hung.durationMs < 5_000, `took ${hung.durationMs} ms`)

  const dead = await probe(new Target({ id: 'b', url: `http://127.0.0.1:${await deadPort()}` }))
  t.match(dead, { ok: false, error: 'ECONNREFUSED' })

  const ac = new AbortController()
  const slow = createHttpProbe({ timeout: 10_000 }, agent)
  const p = slow(new Target({ id: 'c', url: up.url }), ac.signal)
  setTimeout(() => ac.abort(), 50)
  const aborted = await p
  t.equal(aborted.ok, false)
  t.ok(aborted.durationMs < 5_000)
})

t.test('tcp probe: up, then down after the server dies', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(() => up.close())
  const probe = createTcpProbe({ timeout: 500 })
  const target = new Target({ id: 'a', url: up.url })
  t.match(await probe(target), { ok: true })
  await up.kill()
  t.match(await probe(target), { ok: false, error: 'ECONNREFUSED' })
  await up.restart()
  t.match(await probe(target), { ok: true })
  const ac = new AbortController()
  ac.abort()
  t.match(await probe(target, ac.signal), { ok: false, error: 'aborted' })
})
