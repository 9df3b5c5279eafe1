// Active health checking through the gateway, against real upstream processes: a killed target,
// a sick one, its recovery with slow start, a flapping one, and the TCP probe.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import type { HealthEvent } from '../lib/health/index.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'

const TOKEN = 'health-probes-token'
// 2 × 400 ms + 400 ms: the bound for a killed target (probes at interval + up to 40 ms jitter).
// A killed target fails its probe at once (refused); the timeout is generous against false alarms on a busy machine.
const INTERVAL = 400
const TIMEOUT = 400
const THRESHOLD = 2
const BOUND = THRESHOLD * INTERVAL + TIMEOUT
const MARGIN = 3000 // a loaded 2-core machine: timers and probes run late, never early

const live = new Set<UpstreamProcess>()
async function up (id: string, port?: number): Promise<UpstreamProcess> {
  const u = await startUpstream({ id, port })
  live.add(u)
  // The first request of the process compiles undici's HTTP parser: do it here, not in the gateway's first probe.
  await u.stats()
  return u
}
t.teardown(async () => { await Promise.all([...live].map(async (u) => await u.kill())) })

const activeHttp = { type: 'http' as const, path: '/health', interval: `${INTERVAL}ms`, timeout: `${TIMEOUT}ms`, healthyThreshold: THRESHOLD, unhealthyThreshold: THRESHOLD }

async function listen (cfg: GatewayConfigInput): Promise<{ app: FastifyInstance, url: string, events: HealthEvent[] }> {
  const app = Fastify({ logger: false })
  await app.register(gateway, { node: { id: 'gw-health', port: 0 }, admin: { token: TOKEN }, ...cfg })
  // Subscribed before ready: probes start in onReady, so no event is missed.
  const events: HealthEvent[] = []
  app.gatewayHealth.subscribe((e) => { events.push(e) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${addr.port}`, events }
}

type TargetView = Record<string, any> & { id: string, status: string }
async function targetsOf (url: string, upstream: string): Promise<TargetView[]> {
  const res = await get(`${url}/gateway/status`, { headers: { authorization: `Bearer ${TOKEN}` } })
  if (res.status !== 200) throw new Error(`status route answered ${res.status}`)
  return res.body.upstreams[upstream].targets as TargetView[]
}

/** Poll the admin status route until `id` has `status`; resolves with the view and the ms it took. */
async function waitStatus (url: string, upstream: string, id: string, status: string, ms = 15_000): Promise<{ view: TargetView, ms: number }> {
  const start = Date.now()
  for (;;) {
    const view = (await targetsOf(url, upstream)).find((x) => x.id === id)
    if (view?.status === status) return { view, ms: Date.now() - start }
    if (Date.now() - start > ms) throw new Error(`${upstream}/${id} not ${status} after ${ms} ms (is ${String(view?.status)})`)
    await sleep(20)
  }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

/** `conc` loops of GETs for `ms`; counts answers by echoed upstream id and by status. */
async function load (url: string, ms: number, conc = 6): Promise<{ ids: Record<string, number>, statuses: Record<number, number>, total: number }> {
  const ids: Record<string, number> = {}
  const statuses: Record<number, number> = {}
  let total = 0
  const end = Date.now() + ms
  await Promise.all(Array.from({ length: conc }, async () => {
    while (Date.now() < end) {
      const r = await get(url)
      total++
      statuses[r.status] = (statuses[r.status] ?? 0) + 1
      const id = String(r.body?.id)
      ids[id] = (ids[id] ?? 0) + 1
    }
  }))
  return { ids, statuses, total }
}

/** `n` sequential GETs. */
async function burst (url: string, n: number): Promise<{ ids: Record<string, number>, statuses: Record<number, number> }> {
  const ids: Record<string, number> = {}
  const statuses: Record<number, number> = {}
  for (let i = 0; i < n; i++) {
    const r = await get(url)
    statuses[r.status] = (statuses[r.status] ?? 0) + 1
    const id = String(r.body?.id)
    ids[id] = (ids[id] ?? 0) + 1
  }
  return { ids, statuses }
}

t.test('killed target: unhealthy within the bound, no traffic; restarted: healthy after healthyThreshold probes, traffic ramps back with slowStart', async (t) => {
  const a = await up('kill-a')
  let b = await up('kill-b')
  const { app, url, events } = await listen({
    upstreams: {
      api: {
        strategy: 'weighted_round_robin',
        targets: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }],
        healthCheck: { active: activeHttp, slowStart: '2s' },
      },
    },
    routes: [{ path: '/api', upstream: 'api' }],
  })
  t.teardown(() => app.close())
  await waitStatus(url, 'api', 'a', 'healthy')
  await waitStatus(url, 'api', 'b', 'healthy')
  const boot = await burst(`${url}/api/boot`, 20)
  t.same(boot.ids, { 'kill-a': 10, 'kill-b': 10 }, 'both targets share traffic at boot (no slow start on the first verdict)')

  // --- kill b ---
  const killedAt = Date.now()
  await b.kill('SIGKILL')
  const down = await waitStatus(url, 'api', 'b', 'unhealthy')
  t.ok(down.ms <= BOUND + MARGIN, `unhealthy ${down.ms} ms after SIGKILL (bound ${BOUND} ms + ${MARGIN} ms margin)`)
  t.equal(down.view.reason, 'probe_failed', 'reason: probe_failed')
  t.match(down.view.lastError, /ECONNREFUSED|ECONNRESET|refused|closed|socket/i, `lastError names the failure (${String(down.view.lastError)})`)
  t.ok(down.view.consecutiveFailures >= THRESHOLD, 'consecutive failures shown')
  t.equal(typeof down.view.since, 'string', 'since shown')
  const toUnhealthy = events.filter((e) => e.type === 'transition' && e.target.id === 'b' && e.to === 'unhealthy' && e.at >= killedAt)
  t.equal(toUnhealthy.length, 1, 'one transition event to unhealthy')

  const aBefore = (await a.stats()).requests
  const after = await burst(`${url}/api/after-kill`, 60)
  t.same(after.statuses, { 200: 60 }, 'every request answered 200')
  t.same(after.ids, { 'kill-a': 60 }, 'all from the live target: the killed one gets no traffic')
  t.equal((await a.stats()).requests - aBefore, 60, 'the live target saw each request once (no try went to the dead one first)')

  // --- restart b on the same port ---
  const restartedAt = Date.now()
  b = await up('kill-b', b.port)
  const healthy = await new Promise<{ at: number, checks: number }>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error('b never turned healthy')) }, 15_000)
    const off = app.gatewayHealth.subscribe((e) => {
      if (e.type !== 'transition' || e.target.id !== 'b' || e.to !== 'healthy') return
      off()
      clearTimeout(timer)
      const at = e.at
      b.stats().then((s) => { resolve({ at, checks: s.healthChecks }) }, reject)
    })
  })
  t.ok(healthy.checks >= THRESHOLD, `healthy after ${THRESHOLD} passing probes (the restarted target had ${healthy.checks} probes by then)`)
  t.ok(healthy.at - restartedAt >= INTERVAL - 20, `not before ${THRESHOLD} probes one interval apart (${healthy.at - restartedAt} ms after restart)`)
  const back = await waitStatus(url, 'api', 'b', 'healthy')
  t.equal(back.view.reason, 'probe_passed')
  t.ok(back.view.slowStartUntil !== null, 'slow start in progress')
  t.ok(back.view.effectiveWeight < back.view.weight, `effective weight ramps (${String(back.view.effectiveWeight)} < ${String(back.view.weight)})`)

  // Slow start: the first second after the transition vs a second after the 2 s ramp.
  const early = await load(`${url}/api/ramp`, Math.max(200, healthy.at + 1000 - Date.now()))
  await sleep(Math.max(0, healthy.at + 2200 - Date.now()))
  const late = await load(`${url}/api/ramp`, 1000)
  const share = (r: typeof early): number => (r.ids['kill-b'] ?? 0) / r.total
  t.same(Object.keys(early.statuses), ['200'], 'ramp: every request 200')
  t.same(Object.keys(late.statuses), ['200'], 'after ramp: every request 200')
  t.ok((early.ids['kill-b'] ?? 0) > 0, 'the restarted target gets traffic again')
  t.ok(share(late) > 0.4 && share(late) < 0.6, `after the ramp it takes its full share (${share(late).toFixed(2)} of ${late.total})`)
  t.ok(share(early) < share(late) * 0.75, `first second share ${share(early).toFixed(2)} (of ${early.total}) clearly below ${share(late).toFixed(2)} after the ramp`)
})

t.test('sick target: serves traffic but its probe answers 503: unhealthy, no traffic', async (t) => {
  const a = await up('sick-a')
  const b = await up('sick-b')
  const { app, url } = await listen({
    upstreams: { api: { targets: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }], healthCheck: { active: activeHttp } } },
    routes: [{ path: '/api', upstream: 'api' }],
  })
  t.teardown(() => app.close())
  await waitStatus(url, 'api', 'b', 'healthy')
  await b.control({ healthStatus: 503 })
  const sick = await waitStatus(url, 'api', 'b', 'unhealthy')
  t.ok(sick.ms <= BOUND + MARGIN, `unhealthy after ${sick.ms} ms`)
  t.match(sick.view.lastError, /503/, 'lastError: the probe status')
  const direct = await get(`${b.url}/direct`)
  t.equal(direct.status, 200, 'the sick target still serves traffic when asked directly')

  const bBefore = (await b.stats()).requests
  const res = await burst(`${url}/api/x`, 60)
  t.same(res.statuses, { 200: 60 })
  t.same(res.ids, { 'sick-a': 60 }, 'all traffic to the healthy target')
  t.equal((await b.stats()).requests - bBefore, 0, 'the sick target received no proxied request')

  await b.control({ healthStatus: 200 })
  await waitStatus(url, 'api', 'b', 'healthy')
  const again = await burst(`${url}/api/y`, 20)
  t.same(again.ids, { 'sick-a': 10, 'sick-b': 10 }, 'healthy again: traffic returns')
})

t.test('flapping target: thresholds 2/2 give hysteresis, 1/1 thrashes', async (t) => {
  const steady = await up('flap-steady')
  const twitchy = await up('flap-twitchy')
  await steady.control({ healthFlap: true })
  await twitchy.control({ healthFlap: true })
  const probe = { type: 'http' as const, path: '/health', interval: '200ms', timeout: '200ms' }
  const { app, url, events } = await listen({
    upstreams: {
      steady: { targets: [{ id: 's', url: steady.url }], healthCheck: { active: { ...probe, healthyThreshold: 2, unhealthyThreshold: 2 } } },
      twitchy: { targets: [{ id: 'w', url: twitchy.url }], healthCheck: { active: { ...probe, healthyThreshold: 1, unhealthyThreshold: 1 } } },
    },
  })
  t.teardown(() => app.close())
  await sleep(3500)
  const count = (u: string): number => events.filter((e) => e.type === 'transition' && e.upstream === u).length
  const probes = (await steady.stats()).healthChecks
  t.ok(probes >= 8, `the flapping target was probed ${probes} times`)
  t.ok(count('steady') <= 3, `thresholds 2/2: ${count('steady')} transition(s) (the first verdict only, expected 1; a probe timeout on a busy machine may add one flip)`)
  t.ok(count('twitchy') >= 6, `thresholds 1/1 on the same flapping: ${count('twitchy')} transitions`)
  const metrics = (await get(`${url}/metrics`)).text
  let sum = 0
  for (const m of metrics.matchAll(/^health_transitions_total\{upstream="steady",[^}]*\} (\d+)/gm)) sum += Number(m[1])
  t.equal(sum, count('steady'), 'health_transitions_total agrees with the events')
})

t.test('TCP probe: a killed target turns unhealthy; probes never hit the HTTP probe path', async (t) => {
  const a = await up('tcp-a')
  const b = await up('tcp-b')
  const { app, url } = await listen({
    upstreams: {
      api: {
        targets: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }],
        healthCheck: { active: { type: 'tcp', interval: `${INTERVAL}ms`, timeout: `${TIMEOUT}ms`, healthyThreshold: 2, unhealthyThreshold: 2 } },
      },
    },
    routes: [{ path: '/api', upstream: 'api' }],
  })
  t.teardown(() => app.close())
  await waitStatus(url, 'api', 'a', 'healthy')
  await waitStatus(url, 'api', 'b', 'healthy')
  await b.kill('SIGKILL')
  const down = await waitStatus(url, 'api', 'b', 'unhealthy')
  t.ok(down.ms <= BOUND + MARGIN, `tcp: unhealthy ${down.ms} ms after SIGKILL`)
  t.match(down.view.lastError, /ECONNREFUSED|refused/i, `lastError: ${String(down.view.lastError)}`)
  const res = await burst(`${url}/api/tcp`, 40)
  t.same(res.statuses, { 200: 40 })
  t.same(res.ids, { 'tcp-a': 40 }, 'no traffic to the killed target')
  t.equal((await a.stats()).healthChecks, 0, 'TCP probes connect only: no request on /health')
})
