// Passive outlier ejection through the gateway, against real upstream processes answering 503:
// the bad target's traffic stays bounded, maxEjectionPercent holds, the last target is never ejected.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import type { HealthEvent } from '../lib/health/index.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'

const TOKEN = 'health-passive-token'
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(4, 'pas') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })
// every test starts from four good targets
t.beforeEach(async () => { await Promise.all(ups.map(async (u) => { await u.control({ status: 200 }) })) })

async function listen (cfg: GatewayConfigInput): Promise<{ app: FastifyInstance, url: string, events: HealthEvent[] }> {
  const app = Fastify({ logger: false })
  await app.register(gateway, { node: { id: 'gw-passive', port: 0 }, admin: { token: TOKEN }, ...cfg })
  const events: HealthEvent[] = []
  app.gatewayHealth.subscribe((e) => { events.push(e) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${addr.port}`, events }
}

function upstream (targets: UpstreamProcess[], passive: Record<string, unknown>): GatewayConfigInput {
  return {
    upstreams: {
      api: {
        targets: targets.map((u) => ({ id: u.id, url: u.url })),
        healthCheck: { passive: { consecutiveFailures: 3, baseEjectionTime: '1s', ...passive } },
      },
    },
    routes: [{ path: '/api', upstream: 'api' }],
  }
}

async function requests (u: UpstreamProcess): Promise<number> { return (await u.stats()).requests }

t.test('one target answering 503: ejected after 3 failures, receives a bounded number of requests, re-admitted by a trial', async (t) => {
  const [good, bad] = ups
  await bad.control({ status: 503 })
  const { app, url, events } = await listen(upstream([good, bad], {}))
  t.teardown(() => app.close())
  const bad0 = await requests(bad)
  const good0 = await requests(good)

  // 200 sequential requests, 10 ms apart: ~2-3 s, so expired ejections get their trial.
  const started = Date.now()
  const statuses: Record<number, number> = {}
  for (let i = 0; i < 200; i++) {
    const r = await get(`${url}/api/p/${i}`)
    statuses[r.status] = (statuses[r.status] ?? 0) + 1
    await sleep(10)
  }
  const seconds = (Date.now() - started) / 1000
  const badGot = await requests(bad) - bad0
  const goodGot = await requests(good) - good0
  const trials = events.filter((e) => e.type === 'trial').length
  t.same(statuses, { 200: 200 }, 'every client request answered 200 (the failed tries were retried on the good target)')
  t.ok(badGot >= 3, `the bad target got the 3 failures that eject it (${badGot})`)
  t.equal(badGot, 3 + trials, `the bad target got 3 + ${trials} trial(s) = ${badGot} of 200 requests in ${seconds.toFixed(1)} s`)
  t.ok(trials <= Math.ceil(seconds), `one trial per expired ejection at most (${trials} in ${seconds.toFixed(1)} s, ejections 1 s, 2 s, ...)`)
  t.equal(goodGot, 200, 'the good target answered every client request')

  const ejections = events.filter((e): e is Extract<HealthEvent, { type: 'ejected' }> => e.type === 'ejected')
  t.equal(ejections[0]?.reason, 'consecutive_failures', 'first ejection: consecutive failures')
  t.equal(ejections[0]?.target.id, bad.id)
  t.ok(ejections[0].until - ejections[0].at >= 1000 && ejections[0].until - ejections[0].at < 1100, 'first ejection lasts baseEjectionTime')
  for (const [i, e] of ejections.slice(1).entries()) {
    t.equal(e.reason, 'trial_failed', `ejection ${i + 2}: after a failed trial`)
    t.equal(e.ejectionCount, i + 2, `ejection ${i + 2}: n = ${i + 2}`)
    t.ok(e.until - e.at >= (i + 2) * 1000 - 5, `ejection ${i + 2} lasts ${i + 2} × baseEjectionTime`)
  }
  t.notOk(ejections.some((e) => e.target.id === good.id), 'the good target was never ejected')

  const st = await get(`${url}/gateway/status`, { headers: { authorization: `Bearer ${TOKEN}` } })
  const view = (st.body.upstreams.api.targets as Array<Record<string, any>>).find((x) => x.id === bad.id)!
  t.equal(view.ejected, true, 'status route: ejected')
  t.equal(view.totalEjections, ejections.length, 'status route: ejection count')
  t.equal(view.lastError, 'status 503', 'status route: last error')
  // the gauge says 0 while the last ejection runs and 1 once it has expired (eligible for its trial); on a busy
  // machine the scrape may come after the expiry, so which one it must say depends on when it was taken
  const lastUntil = ejections[ejections.length - 1].until
  const scrapeStart = Date.now()
  const metrics = (await get(`${url}/metrics`)).text
  const scrapeEnd = Date.now()
  t.match(metrics, /health_ejections_total\{upstream="api",reason="consecutive_failures"\} 1/)
  const gauge = scrapeEnd < lastUntil ? '0' : scrapeStart >= lastUntil ? '1' : '[01]'
  t.match(metrics, new RegExp(`upstream_target_healthy\\{upstream="api",target="${bad.id}"\\} ${gauge}\n`),
    `healthy gauge ${gauge}: scraped ${lastUntil - scrapeEnd} ms before the last ejection ends`)

  // Fixed: the next trial after the ejection ends re-admits it, and traffic returns.
  await bad.control({ status: 200 })
  const until = ejections[ejections.length - 1].until
  await sleep(Math.max(0, until - Date.now() + 50))
  const ids: Record<string, number> = {}
  for (let i = 0; i < 20; i++) {
    const r = await get(`${url}/api/back/${i}`)
    ids[r.body.id] = (ids[r.body.id] ?? 0) + 1
  }
  t.ok((ids[bad.id] ?? 0) >= 5, `re-admitted: it serves again (${ids[bad.id] ?? 0} of 20)`)
  t.ok(events.some((e) => e.type === 'readmitted' && e.target.id === bad.id && e.reason === 'trial_passed'), 're-admitted by a passing trial')
})

t.test('maxEjectionPercent: three bad targets of four, 50 %: at most two out at once', async (t) => {
  const [good, ...bad] = ups
  await Promise.all(bad.map(async (u) => { await u.control({ status: 503 }) }))
  const { app, url, events } = await listen(upstream(ups, { maxEjectionPercent: 50 }))
  t.teardown(() => app.close())
  let maxOut = 0
  let minEligible = Infinity
  const sample = (): void => {
    // Ejected = an ejection still running. An expired one waits for its trial; while the one trial
    // request is in flight the target is held too (not eligible), but that is not a new ejection.
    const now = Date.now()
    const snap = app.gatewayHealth.registry.snapshot('api', now)!
    maxOut = Math.max(maxOut, snap.filter((x) => x.ejectedUntil !== null && x.ejectedUntil > now && !x.trialInFlight).length)
    minEligible = Math.min(minEligible, app.gatewayHealth.registry.summary('api', now)!.eligible)
  }
  const off = app.gatewayHealth.subscribe(sample) // right after every ejection and re-admission
  for (let i = 0; i < 150; i++) {
    await get(`${url}/api/m/${i}`)
    sample()
    await sleep(5)
  }
  off()
  const ejected = new Set(events.filter((e) => e.type === 'ejected').map((e) => e.target.id))
  t.equal(maxOut, 2, `never more than 50 % of 4 targets ejected at once (max ${maxOut})`)
  t.ok(minEligible >= 1, `eligible targets never ran out (min ${minEligible}; 2 but for a trial's round trip)`)
  t.ok(ejected.size >= 2, `ejections did happen (${[...ejected].join(', ')})`)
  t.notOk(ejected.has(good.id), 'the good target was never ejected')
  const ready = await get(`${url}/ready`)
  t.equal(ready.status, 200, '/ready: the upstream still has eligible targets')
})

t.test('never eject the last target: two bad targets of two, maxEjectionPercent 100: one stays eligible', async (t) => {
  const pair = ups.slice(2)
  await Promise.all(pair.map(async (u) => { await u.control({ status: 503 }) }))
  const { app, url, events } = await listen(upstream(pair, { maxEjectionPercent: 100 }))
  t.teardown(() => app.close())
  let minEligible = Infinity
  let maxOut = 0
  const statuses: Record<number, number> = {}
  const codes = new Set<string>()
  for (let i = 0; i < 100; i++) {
    const r = await get(`${url}/api/l/${i}`)
    statuses[r.status] = (statuses[r.status] ?? 0) + 1
    if (typeof r.body?.code === 'string') codes.add(r.body.code)
    const s = app.gatewayHealth.registry.summary('api')!
    minEligible = Math.min(minEligible, s.eligible)
    maxOut = Math.max(maxOut, s.ejected)
    if (i % 20 === 0) t.equal((await get(`${url}/ready`)).status, 200, `/ready stays 200 (request ${i})`)
    await sleep(5)
  }
  t.ok(events.some((e) => e.type === 'ejected'), 'one of them was ejected')
  t.equal(maxOut, 1, 'never both at once')
  t.equal(minEligible, 1, 'one target stayed eligible at every request')
  t.same(Object.keys(statuses), ['503'], 'clients get the upstream\'s own 503')
  t.same([...codes], [], 'never the gateway\'s "no healthy target" error')
})
