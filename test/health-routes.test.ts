// /health and /ready through the gateway with real upstream processes, and the recovery webhook
// for a target that stays down.
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import type { HealthEvent } from '../lib/health/index.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { until } from './helpers/poll.js'

const TOKEN = 'health-routes-token'
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
// Generous timeout: a false alarm on a busy machine would flip /ready; a killed target fails at once anyway.
const probe = { type: 'http' as const, path: '/health', interval: '400ms', timeout: '400ms', healthyThreshold: 1, unhealthyThreshold: 2 }

const live = new Set<UpstreamProcess>()
async function up (id: string): Promise<UpstreamProcess> {
  const u = await startUpstream({ id })
  live.add(u)
  await u.stats() // compiles undici's parser in this process before the gateway's first probe
  return u
}
t.teardown(async () => { await Promise.all([...live].map(async (u) => await u.kill())) })

async function listen (cfg: GatewayConfigInput): Promise<{ app: FastifyInstance, url: string, events: HealthEvent[] }> {
  const app = Fastify({ logger: false })
  await app.register(gateway, { node: { id: 'gw-routes', port: 0 }, admin: { token: TOKEN }, ...cfg })
  const events: HealthEvent[] = []
  app.gatewayHealth.subscribe((e) => { events.push(e) })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${addr.port}`, events }
}

/** Poll `url` until it answers `status` (GET); that answer. */
async function answering (url: string, status: number, ms = 15_000): Promise<Awaited<ReturnType<typeof get>>> {
  let r: Awaited<ReturnType<typeof get>> | undefined
  await until(async () => (r = await get(url)).status === status, ms, `${url} to answer ${status}`, 20)
  return r!
}

t.test('/ready: 503 while a required upstream has no healthy target, /health stays 200; HEAD on both; required: false does not count', async (t) => {
  const main = await up('rd-main')
  const extra = await up('rd-extra')
  const { app, url } = await listen({
    upstreams: {
      main: { targets: [{ id: 'm1', url: main.url }], healthCheck: { active: probe } },
      extra: { targets: [{ id: 'x1', url: extra.url }], healthCheck: { active: probe, required: false } },
    },
    routes: [{ path: '/main', upstream: 'main' }],
  })
  t.teardown(() => app.close())

  const ready = await answering(`${url}/ready`, 200)
  t.equal(ready.status, 200, 'ready at start')
  t.match(ready.body, { status: 'ready', draining: false, upstreams: { main: { required: true, eligible: 1, total: 1 }, extra: { required: false } } })

  // The optional upstream loses its only target: still ready.
  await extra.kill('SIGKILL')
  const st = async (): Promise<string> => (await get(`${url}/gateway/status`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.upstreams.extra.targets[0].status
  await until(async () => await st() === 'unhealthy', 15_000, 'the optional upstream\'s target to be unhealthy', 20)
  t.equal(await st(), 'unhealthy', 'the optional upstream\'s target is down')
  const stillReady = await get(`${url}/ready`)
  t.equal(stillReady.status, 200, 'required: false: /ready stays 200')
  t.match(stillReady.body.upstreams.extra, { required: false, eligible: 0, total: 1 })

  // The required upstream's only target fails its probe: not ready, but alive.
  await main.control({ healthStatus: 503 })
  const notReady = await answering(`${url}/ready`, 503)
  t.match(notReady.body, { status: 'not_ready', draining: false, upstreams: { main: { required: true, eligible: 0, total: 1 } } })
  const health = await get(`${url}/health`)
  t.equal(health.status, 200, '/health stays 200 (liveness)')
  t.same(health.body, { status: 'ok' })
  const headReady = await get(`${url}/ready`, { method: 'HEAD' })
  t.equal(headReady.status, 503, 'HEAD /ready: 503')
  t.equal(headReady.text, '', 'HEAD: no body')
  const headHealth = await get(`${url}/health`, { method: 'HEAD' })
  t.equal(headHealth.status, 200, 'HEAD /health: 200')
  t.equal(headHealth.text, '')
  const proxied = await get(`${url}/main/x`)
  t.equal(proxied.status, 503, 'the route answers 503 meanwhile')
  t.equal(proxied.body.code, 'FHG_ERR_NO_HEALTHY_TARGET')

  await main.control({ healthStatus: 200 })
  await answering(`${url}/ready`, 200)
  t.equal((await get(`${url}/ready`, { method: 'HEAD' })).status, 200, 'HEAD /ready: 200 once healthy again')
  t.equal((await get(`${url}/main/y`)).status, 200, 'the route serves again')
})

t.test('recovery webhook: called once per cooldown for a target that stays down, never more', async (t) => {
  const calls: Array<{ at: number, body: Record<string, unknown> }> = []
  const hook = http.createServer((req, res) => {
    let data = ''
    req.setEncoding('utf8').on('data', (c: string) => { data += c })
    req.on('end', () => {
      calls.push({ at: Date.now(), body: JSON.parse(data) as Record<string, unknown> })
      res.writeHead(204).end()
    })
  })
  hook.listen(0, '127.0.0.1')
  await once(hook, 'listening')
  t.teardown(() => new Promise((resolve) => hook.close(resolve)))
  const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/restart`

  const ok = await up('rc-ok')
  const doomed = await up('rc-doomed')
  const { app, url, events } = await listen({
    upstreams: {
      api: {
        targets: [{ id: 'ok', url: ok.url }, { id: 'doomed', url: doomed.url }],
        healthCheck: { active: probe, recovery: { after: '300ms', cooldown: '1s', webhook: { url: hookUrl, timeout: '1s' } } },
      },
    },
    routes: [{ path: '/api', upstream: 'api' }],
  })
  t.teardown(() => app.close())
  await answering(`${url}/ready`, 200)
  await sleep(500)
  const spurious = (id: string): boolean => events.some((e) => e.type === 'transition' && e.target.id === id && e.to === 'unhealthy')
  if (!spurious('ok') && !spurious('doomed')) t.equal(calls.length, 0, 'no call while every target is healthy')

  const unhealthy = new Promise<number>((resolve) => {
    const off = app.gatewayHealth.subscribe((e) => {
      if (e.type === 'transition' && e.target.id === 'doomed' && e.to === 'unhealthy') { off(); resolve(e.at) }
    })
  })
  await doomed.kill('SIGKILL')
  const since = await unhealthy
  await sleep(Math.max(0, since + 2500 - Date.now()))
  const elapsed = Date.now() - since
  // Only this outage's calls (a busy machine may have failed a probe before).
  const mine = calls.filter((c) => c.body.target === 'doomed' && c.at >= since)
  const n = mine.length
  // after 300 ms, then every 1 s: at most 1 + floor((elapsed - 300) / 1000) calls in `elapsed` ms
  const most = 1 + Math.floor((elapsed - 300) / 1000)
  t.ok(n >= 2, `${n} calls in ${elapsed} ms since the target turned unhealthy`)
  t.ok(n <= most, `not more than once per cooldown (${n} <= ${most})`)
  t.ok(mine[0].at - since >= 300 - 5, `first call after recovery.after (${mine[0].at - since} ms)`)
  // Spacing by the attempt events (the gateway's clock); arrivals at the hook carry connect jitter.
  const attempts = events.filter((e) => e.type === 'recovery_attempt' && e.target.id === 'doomed' && e.at >= since)
  for (let i = 1; i < attempts.length; i++) {
    t.ok(attempts[i].at - attempts[i - 1].at >= 1000 - 2, `attempt ${i + 1}: ${attempts[i].at - attempts[i - 1].at} ms after the previous one (cooldown 1 s)`)
  }
  for (let i = 1; i < n; i++) t.ok(mine[i].at - mine[i - 1].at >= 700, `call ${i + 1} arrived ${mine[i].at - mine[i - 1].at} ms after the previous one`)
  t.match(mine[0].body, { upstream: 'api', target: 'doomed', url: doomed.url, since, reason: 'probe_failed', lastError: String })
  const results = events.filter((e): e is Extract<HealthEvent, { type: 'recovery_result' }> => e.type === 'recovery_result' && e.target.id === 'doomed' && e.at >= since)
  t.ok(attempts.length >= n && attempts.length <= n + 1, 'every call is a recovery_attempt event')
  t.ok(results.length >= n - 1 && results.every((r) => r.ok), 'and its outcome a recovery_result event (ok)')
  if (!spurious('ok')) {
    t.notOk(events.some((e) => (e.type === 'recovery_attempt' || e.type === 'recovery_result') && e.target.id === 'ok'), 'never for the healthy target')
  }

  // A failing webhook never touches traffic.
  hook.removeAllListeners('request')
  hook.on('request', (_req, res) => { calls.push({ at: Date.now(), body: {} }); res.writeHead(500).end() })
  const traffic: Record<number, number> = {}
  for (let i = 0; i < 30; i++) {
    const r = await get(`${url}/api/r/${i}`)
    traffic[r.status] = (traffic[r.status] ?? 0) + 1
    await sleep(40)
  }
  t.same(traffic, { 200: 30 }, 'traffic served while recovery attempts fail')
  await until(() => events.some((e) => e.type === 'recovery_result' && !e.ok), 3_000, 'a failed recovery_result', 20)
  const failed = events.find((e): e is Extract<HealthEvent, { type: 'recovery_result' }> => e.type === 'recovery_result' && !e.ok)
  t.match(failed?.error, /500/, 'a failed attempt is reported as an event')
})
