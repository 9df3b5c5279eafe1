import t from 'tap'
import net from 'node:net'
import { request } from 'undici'
import { startUpstream, startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { startGateway, get, client } from './helpers/gateway.js'

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const total = async (ups: UpstreamProcess[]): Promise<number> => (await Promise.all(ups.map(async (u) => (await u.stats()).requests))).reduce((a, b) => a + b, 0)

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(3, 'f') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })
t.afterEach(async () => { await Promise.all(ups.map(async (u) => { if (u.child.exitCode === null) await u.control({ status: 200, delay: 0 }) })) })

const two = (): { upstreams: Record<string, { strategy: 'round_robin', targets: Array<{ id: string, url: string }> }> } =>
  ({ upstreams: { u: { strategy: 'round_robin', targets: [{ id: 'a', url: ups[0].url }, { id: 'b', url: ups[1].url }] } } })

t.test('a GET answered 503 is retried on another target', async (t) => {
  const { app, url } = await startGateway(two(), [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  await ups[0].control({ status: 503 })
  const before = (await ups[0].stats()).requests
  for (let i = 0; i < 6; i++) {
    const res = await get(`${url}/r${i}`)
    t.equal(res.status, 200)
    t.equal(res.body.id, 'f-2', 'answered by the healthy target')
  }
  t.ok((await ups[0].stats()).requests - before >= 2, 'the failing target was tried')
  const m = (await get(`${url}/metrics`)).text
  t.match(m, /retries_total\{upstream="u",reason="503"\} [1-9]/)
})

t.test('a POST that reached an upstream is never replayed', async (t) => {
  const { app, url } = await startGateway(two(), [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  await ups[0].control({ status: 503 })
  await ups[1].control({ status: 503 })
  const before = await total(ups.slice(0, 2))
  const res = await get(`${url}/orders`, { method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } })
  t.equal(res.status, 503, 'the upstream answer stands')
  t.equal(await total(ups.slice(0, 2)) - before, 1, 'exactly one upstream request')
})

t.test('a POST with an Idempotency-Key is retried, body and all', async (t) => {
  const { app, url } = await startGateway(two(), [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  await ups[0].control({ status: 503 })
  for (let i = 0; i < 4; i++) {
    const res = await get(`${url}/orders`, { method: 'POST', body: 'hello', headers: { 'content-type': 'text/plain', 'idempotency-key': `k${i}` } })
    t.equal(res.status, 200)
    t.equal(res.body.id, 'f-2')
    t.equal(res.body.bodyBytes, 5, 'the buffered body is sent again')
  }
})

t.test('a try past perTryTimeout goes to another target', async (t) => {
  const { app, url } = await startGateway({ ...two(), failover: { u: { perTryTimeout: 200 } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  await ups[0].control({ delay: 3000 })
  const started = Date.now()
  for (let i = 0; i < 2; i++) t.equal((await get(`${url}/t`)).body.id, 'f-2')
  t.ok(Date.now() - started < 2500, 'no try waited for the slow target')
})

t.test('the overall timeout answers 504 when every try is slow', async (t) => {
  const { app, url } = await startGateway({ ...two(), failover: { u: { timeout: 400 } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  await ups[0].control({ delay: 3000 })
  await ups[1].control({ delay: 3000 })
  const started = Date.now()
  const res = await get(`${url}/t`)
  t.equal(res.status, 504)
  t.ok(Date.now() - started < 2000, 'answered at the deadline')
})

t.test('bounded load: every target failing, upstreams get < 2x the requests and clients a prompt 5xx', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: ups.map((u, i) => ({ id: `t${i}`, url: u.url })) } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  for (const u of ups) await u.control({ status: 503 })
  const before = await total(ups)
  const n = 200
  let next = 0
  let slowest = 0
  const statuses: number[] = []
  await Promise.all(Array.from({ length: 20 }, async () => {
    while (next < n) {
      next++
      const started = Date.now()
      const res = await get(`${url}/load`)
      slowest = Math.max(slowest, Date.now() - started)
      statuses.push(res.status)
    }
  }))
  const seen = await total(ups) - before
  t.equal(statuses.length, n)
  t.ok(statuses.every((s) => s >= 500), 'every client got a 5xx')
  t.ok(seen < 2 * n, `upstreams got ${seen} requests for ${n} client requests`)
  t.ok(slowest < 3000, `slowest answer ${slowest} ms`)
  const m = (await get(`${url}/metrics`)).text
  t.match(m, /retry_budget_exhausted_total\{upstream="u"\} [1-9]/)
})

t.test('breaker opens, half-opens and closes', async (t) => {
  const { app, url } = await startGateway({
    upstreams: { u: { targets: [{ id: 'a', url: ups[0].url }] } },
    failover: { u: { maxRetries: 0 } },
    circuitBreaker: { u: { consecutiveFailures: 3, openDuration: 500, halfOpenRequests: 1 } },
  }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const circuit = (): unknown => app.loadBalancer.status().u.targets[0].circuit
  await ups[0].control({ status: 503 })
  for (let i = 0; i < 3; i++) t.equal((await get(`${url}/x`)).status, 503)
  t.equal(circuit(), 'open')
  const before = (await ups[0].stats()).requests
  const refused = await get(`${url}/x`)
  t.equal(refused.status, 503)
  t.equal(refused.body.code, 'FHG_ERR_CIRCUIT_OPEN')
  t.equal((await ups[0].stats()).requests, before, 'an open circuit sends nothing')
  t.match((await get(`${url}/metrics`)).text, /circuit_state\{upstream="u",target="a"\} 2/)
  await ups[0].control({ status: 200 })
  await sleep(700)
  t.equal(circuit(), 'half_open')
  t.equal((await get(`${url}/x`)).status, 200, 'the trial request passes')
  t.equal(circuit(), 'closed')
  t.match((await get(`${url}/metrics`)).text, /circuit_state\{upstream="u",target="a"\} 0/)
})

t.test('the fallback pool serves when the primary has no eligible target; then the static response', async (t) => {
  const { app, url } = await startGateway({
    upstreams: { main: { targets: [{ id: 'm', url: ups[0].url }] }, backup: { targets: [{ id: 'b', url: ups[2].url }] } },
    failover: { main: { fallback: 'backup' } },
  }, [{ prefix: '/p', upstream: 'main' }, { prefix: '/s', upstream: 'backup', fallbackResponse: { status: 503, body: { down: true }, headers: { 'x-fallback': 'static' } } }])
  t.teardown(() => app.close())
  app.loadBalancer.upstreams.get('main')!.pool.get('m')!.status = 'unhealthy'
  const res = await get(`${url}/p/x`)
  t.equal(res.status, 200)
  t.equal(res.body.id, 'f-3', 'answered by the fallback pool')
  await ups[0].control({ status: 503 })
  app.loadBalancer.upstreams.get('main')!.pool.get('m')!.status = 'healthy'
  t.equal((await get(`${url}/p/y`)).body.id, 'f-3', 'every try failed: the fallback pool answers')
  app.loadBalancer.upstreams.get('backup')!.pool.get('b')!.status = 'unhealthy'
  const st = await get(`${url}/s/z`)
  t.equal(st.status, 503)
  t.same(st.body, { down: true })
  t.equal(st.headers['x-fallback'], 'static')
  t.match((await get(`${url}/metrics`)).text, /fallback_total\{upstream="main"\} 2/)
})

t.test('a client abort reaches the upstream as an aborted request', async (t) => {
  const { app, url } = await startGateway(two(), [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const before = (await Promise.all(ups.slice(0, 2).map(async (u) => (await u.stats()).aborted))).reduce((a, b) => a + b, 0)
  const ac = new AbortController()
  const pending = request(`${url}/slow/3000`, { dispatcher: client, signal: ac.signal }).catch((err: unknown) => err)
  await sleep(300)
  ac.abort()
  await pending
  await sleep(300)
  const after = (await Promise.all(ups.slice(0, 2).map(async (u) => (await u.stats()).aborted))).reduce((a, b) => a + b, 0)
  t.equal(after - before, 1, 'the upstream saw the request aborted')
  t.equal(await total(ups.slice(0, 2)) > 0, true)
})

t.test('a hanging webhook notifier slows no request', async (t) => {
  const sockets = new Set<net.Socket>()
  const hang = net.createServer((s) => { sockets.add(s); s.on('error', () => {}) })
  await new Promise<void>((resolve) => hang.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); hang.close() })
  const port = (hang.address() as net.AddressInfo).port
  const { app, url } = await startGateway({ ...two(), notify: [{ type: 'webhook', url: `http://127.0.0.1:${port}/hook`, timeout: 30_000 }] }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  await ups[0].control({ status: 503 })
  let slowest = 0
  for (let i = 0; i < 20; i++) {
    const started = Date.now()
    t.equal((await get(`${url}/w${i}`)).status, 200)
    slowest = Math.max(slowest, Date.now() - started)
  }
  t.ok(slowest < 1000, `slowest request ${slowest} ms`)
  t.ok(sockets.size >= 1, 'the webhook was called (and hangs)')
})

t.test('hedging: with a slow primary the hedge wins and the loser is aborted at the upstream', async (t) => {
  const { app, url } = await startGateway({
    upstreams: { u: { strategy: 'weighted_round_robin', targets: [{ id: 'slow', url: ups[0].url, weight: 100 }, { id: 'fast', url: ups[1].url, weight: 1 }] } },
  }, [{ prefix: '/', upstream: 'u', failover: { hedge: { delay: 100 } } }])
  t.teardown(() => app.close())
  await ups[0].control({ delay: 3000 })
  const abortedBefore = (await ups[0].stats()).aborted
  const started = Date.now()
  const res = await get(`${url}/h`)
  t.equal(res.status, 200)
  t.equal(res.body.id, 'f-2', 'the hedge answered')
  t.ok(Date.now() - started < 2500)
  await sleep(300)
  t.equal((await ups[0].stats()).aborted - abortedBefore, 1, 'the slow try was aborted at the upstream')
  t.match((await get(`${url}/metrics`)).text, /hedges_total\{upstream="u"\} 1/)
})

t.test('killed target under load: SIGKILL one of three mid-load and no response fails', async (t) => {
  const victims = await startUpstreams(3, 'k')
  t.teardown(async () => { await Promise.all(victims.map(async (u) => await u.kill())) })
  const { app, url } = await startGateway({
    upstreams: { k: { targets: victims.map((u, i) => ({ id: `k${i}`, url: u.url })) } },
    failover: { k: { budgetPercent: 100 } },
    circuitBreaker: { k: { consecutiveFailures: 3, openDuration: 10_000 } },
  }, [{ prefix: '/', upstream: 'k' }])
  t.teardown(() => app.close())
  const until = Date.now() + 6000
  let ok = 0
  const failures: string[] = []
  setTimeout(() => { void victims[1].kill('SIGKILL') }, 3000)
  await Promise.all(Array.from({ length: 20 }, async () => {
    while (Date.now() < until) {
      try {
        const res = await get(`${url}/load`)
        if (res.status === 200) ok++
        else failures.push(`status ${res.status} ${res.text}`)
      } catch (err) {
        failures.push(String(err))
      }
    }
  }))
  t.same(failures.slice(0, 5), [], 'no response failed')
  t.ok(ok > 100, `${ok} responses`)
  t.equal(victims[1].child.signalCode, 'SIGKILL')
})
