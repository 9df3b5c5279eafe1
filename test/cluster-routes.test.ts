// Config sync of routes, per-route rate limits and upstream failover/timeouts: two gateway nodes (Fastify
// instances with the gateway plugin and routes of their own, as an app would run them) on one real
// redis-server, real upstream processes. A PUT on A must change how B routes, with no request in flight dropped.
import t from 'tap'
import { mkdtempSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { validateConfig } from '../lib/config/index.js'
import gateway from '../plugins/gateway.js'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { until } from './helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-cluster-routes-'))
const TOKEN = 'routes-admin-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const CLUSTER = `cr${process.pid}`

let redis: RedisProcess
let u1: UpstreamProcess
let u2: UpstreamProcess
let deadUrl: string
const apps: FastifyInstance[] = []

t.before(async () => {
  [redis, u1, u2] = await Promise.all([startRedis(), startUpstream({ id: 'u1' }), startUpstream({ id: 'u2' })])
  deadUrl = `http://127.0.0.1:${await closedPort()}`
})
t.teardown(async () => {
  for (const app of apps) await app.close().catch(() => {})
  await Promise.all([u1.kill(), u2.kill()])
  await redis.stop()
})

type Shared = { upstreams: Record<string, any>, routes: Array<Record<string, any>>, rateLimit?: Record<string, any> }

const seed = (): Shared => ({
  upstreams: {
    one: { targets: [{ id: 'one-1', url: u1.url }] },
    two: { targets: [{ id: 'two-1', url: u2.url }] },
    both: { targets: [{ id: 'both-1', url: u1.url }, { id: 'both-2', url: u2.url }] },
    dead: { targets: [{ id: 'dead-1', url: deadUrl }], failover: { maxRetries: 0 } },
  },
  routes: [{ path: '/api', upstream: 'one' }],
})

interface Node { app: FastifyInstance, url: string }

/** A gateway node as an app runs it: the gateway plugin plus routes of its own, declared in code. */
async function startNode (id: string): Promise<Node> {
  const config = validateConfig({
    node: { id, host: '127.0.0.1', port: 0 },
    cluster: { name: CLUSTER, redis: redis.url, heartbeatInterval: '300ms', snapshotPath: join(dir, `${id}.json`) },
    ...seed(),
    admin: { token: TOKEN },
  })
  const app = Fastify({ logger: false, forceCloseConnections: 'idle' })
  apps.push(app)
  await app.register(gateway, { config })
  // routes of the app: a plain handler under a configured prefix, and a proxied one of its own
  app.get('/api/users/me', async () => ({ from: 'code' }))
  app.get('/own/*', { config: { upstream: 'dead' } }, (_req, reply) => { reply.proxy() })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${addr.port}` }
}

async function current (n: Node): Promise<{ version: number, config: Shared }> {
  return (await get(`${n.url}/gateway/config`, { headers: AUTH })).body
}

/** Read the shared config on `n`, change it, PUT it back with If-Match; resolves the answer. */
async function change (n: Node, edit: (c: Shared) => void): Promise<Awaited<ReturnType<typeof get>>> {
  const cur = await current(n)
  edit(cur.config)
  return await get(`${n.url}/gateway/config`, {
    method: 'PUT',
    headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(cur.version) },
    body: JSON.stringify(cur.config),
  })
}

const who = async (n: Node, path: string, headers: Record<string, string> = {}): Promise<string | number> => {
  const r = await get(`${n.url}${path}`, { headers })
  return r.status === 200 ? (r.body?.id ?? r.body?.from ?? 'other') : r.status
}

t.test('routes and their limits change at runtime on every node', async (t) => {
  const a = await startNode('gw-a')
  const b = await startNode('gw-b')
  await until(async () => (await current(a)).version === 1 && (await current(b)).version === 1, 5000, 'both nodes on version 1')
  t.equal(await who(b, '/api/x'), 'u1', 'the seeded route serves on B')

  await t.test('a route added by a PUT on A routes on B within 1 s', async (t) => {
    t.equal(await who(b, '/new/thing'), 404, 'not routed before')
    const took: number[] = []
    for (let i = 0; i < 5; i++) {
      const path = i === 4 ? '/new' : `/new${i}`
      const res = await change(a, (c) => { c.routes.push({ path, upstream: 'two' }) })
      t.equal(res.status, 200, `PUT ${i} accepted`)
      // from A's answer (the version is in Redis) to B routing it: the propagation, not A's validation of the PUT
      const t0 = performance.now()
      await until(async () => (await who(b, `${path}/thing`)) === 'u2', 3000, `B routes ${path}`, 5)
      took.push(performance.now() - t0)
    }
    took.sort((x, y) => x - y)
    t.comment(`PUT answered on A -> B routes the new route (5 routes added): median ${took[2].toFixed(1)} ms, max ${took[4].toFixed(1)} ms`)
    t.ok(took[4] < 1000, 'each within 1 s')
    t.equal(await who(a, '/new'), 'u2', 'A routes it too')
    t.equal((await change(a, (c) => { c.routes = c.routes.filter((r) => !/^\/new\d$/.test(r.path)) })).status, 200)
  })

  await t.test('a removed route answers the 404 of an unknown route on both nodes', async (t) => {
    const res = await change(b, (c) => { c.routes = c.routes.filter((r) => r.path !== '/new') })
    t.equal(res.status, 200)
    await until(async () => (await who(a, '/new/thing')) === 404, 5000, 'A drops /new')
    for (const n of [a, b]) {
      const r = await get(`${n.url}/new/thing?q=1`)
      t.equal(r.status, 404)
      t.same(r.body, { message: 'Route GET:/new/thing?q=1 not found', error: 'Not Found', statusCode: 404 }, 'the same JSON as Fastify\'s own 404')
    }
    t.equal(await who(a, '/api/x'), 'u1', 'the other routes still serve')
  })

  await t.test('a route\'s upstream and strategy change', async (t) => {
    t.equal((await change(a, (c) => { c.routes[0].upstream = 'two' })).status, 200)
    await until(async () => (await who(b, '/api/x')) === 'u2', 5000, 'B sends /api to two')
    t.pass('upstream changed on B')

    t.equal((await change(a, (c) => { c.routes[0] = { path: '/api', upstream: 'both' } })).status, 200)
    await until(async () => (await who(b, '/api/y')) === 'u1', 5000, 'B sends /api to both')
    const rr = new Set<unknown>()
    for (let i = 0; i < 6; i++) rr.add(await who(b, '/api/rr'))
    t.same([...rr].sort(), ['u1', 'u2'], 'round_robin (the upstream\'s) spreads over both targets')

    t.equal((await change(a, (c) => { c.routes[0] = { path: '/api', upstream: 'both', strategy: 'consistent_hash', hashOn: 'header:x-user' } })).status, 200)
    await until(async () => {
      const seen = new Set<unknown>()
      for (let i = 0; i < 6; i++) seen.add(await who(b, '/api/h', { 'x-user': 'alice' }))
      return seen.size === 1
    }, 5000, 'B hashes /api')
    for (const user of ['alice', 'bob', 'carol']) {
      const seen = new Set<unknown>()
      for (let i = 0; i < 6; i++) seen.add(await who(b, '/api/h', { 'x-user': user }))
      t.equal(seen.size, 1, `consistent_hash: ${user} always lands on one target`)
    }
  })

  await t.test('longest prefix wins: /api and /api/orders', async (t) => {
    t.equal((await change(a, (c) => {
      c.routes = [{ path: '/api', upstream: 'one' }, { path: '/api/orders', upstream: 'two' }]
    })).status, 200)
    await until(async () => (await who(b, '/api/orders/7')) === 'u2', 5000, 'B routes /api/orders to two')
    t.equal(await who(b, '/api/orders'), 'u2')
    t.equal(await who(b, '/api/orders/7/lines'), 'u2')
    t.equal(await who(b, '/api/ordersx'), 'u1', 'a sibling sharing letters is not below /api/orders')
    t.equal(await who(b, '/api/x'), 'u1')
    t.equal(await who(b, '/apix'), 404)
  })

  await t.test('routes declared in code keep priority over configured routes', async (t) => {
    t.equal((await change(a, (c) => { c.routes.push({ path: '/api/users', upstream: 'two' }) })).status, 200)
    await until(async () => (await who(b, '/api/users/1')) === 'u2', 5000, 'B routes /api/users to two')
    t.equal(await who(b, '/api/users/me'), 'code', 'GET /api/users/me is the app\'s own route')
    t.equal((await get(`${b.url}/api/users/me`, { method: 'POST' })).body.id, 'u2', 'other methods on that path fall to the configured route')
    t.equal(await who(b, '/health'), 'other', 'the gateway\'s own routes answer')
    t.equal((await get(`${b.url}/health`)).body.status, 'ok')
  })

  await t.test('a route\'s rateLimit set by a PUT on A limits on B', async (t) => {
    t.equal((await change(a, (c) => {
      const r = c.routes.find((x) => x.path === '/api/orders')!
      r.rateLimit = { algorithm: 'fixed_window', limit: 3, window: '1h' }
    })).status, 200)
    await until(async () => /;q=3;/.test(String((await get(`${b.url}/api/orders/rl-probe`)).headers['ratelimit-policy'] ?? '')), 5000, 'B advertises the limit')
    // the probe above spent one unit: two more pass, then 429
    const codes: number[] = []
    for (let i = 0; i < 4; i++) codes.push((await get(`${b.url}/api/orders/${i}`)).status)
    t.same(codes, [200, 200, 429, 429], 'limit 3 per hour: the fourth request and after are refused')
    const refused = await get(`${b.url}/api/orders/x`)
    t.equal(refused.body.code, 'FHG_ERR_RATE_LIMITED')
    t.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After set')
    t.equal(await who(b, '/api/x'), 'u1', 'other routes are not limited')

    t.equal((await change(b, (c) => {
      const r = c.routes.find((x) => x.path === '/api/orders')!
      r.rateLimit = { algorithm: 'fixed_window', limit: 100, window: '1h' }
    })).status, 200)
    await until(async () => (await get(`${a.url}/api/orders/z`)).status === 200, 5000, 'A lets /api/orders through again')
    t.pass('raising the limit on B applies on A')

    t.equal((await change(a, (c) => { delete c.routes.find((x) => x.path === '/api/orders')!.rateLimit })).status, 200)
    await until(async () => (await get(`${b.url}/api/orders/n`)).headers['ratelimit-policy'] === undefined, 5000, 'B drops the limit headers')
    t.pass('removing the rateLimit removes the limit')
  })

  await t.test('the rate limiter\'s own options stay boot-only: 400 naming the key', async (t) => {
    const before = (await current(a)).version
    const res = await change(a, (c) => { c.rateLimit = { onStoreError: 'fail_closed' } })
    t.equal(res.status, 400)
    t.ok(res.body.issues.some((i: { path: string }) => i.path === 'rateLimit.onStoreError'), 'names rateLimit.onStoreError')
    t.equal((await current(a)).version, before, 'nothing written')
  })

  await t.test('a request in flight finishes when its route is removed', async (t) => {
    t.equal((await change(a, (c) => { c.routes.push({ path: '/long', upstream: 'one' }) })).status, 200)
    await until(async () => (await who(b, '/long/x')) === 'u1', 5000, 'B routes /long')
    const onB = get(`${b.url}/long/slow/1500`)
    const onA = get(`${a.url}/long/slow/1500`)
    await new Promise((resolve) => setTimeout(resolve, 200))
    t.equal((await change(a, (c) => { c.routes = c.routes.filter((r) => r.path !== '/long') })).status, 200)
    await until(async () => (await who(b, '/long/x')) === 404, 5000, 'B drops /long')
    t.equal(await who(a, '/long/x'), 404, 'A dropped it too')
    const [rb, ra] = await Promise.all([onB, onA])
    t.equal(rb.status, 200, 'the request in flight on B completed')
    t.equal(rb.body.id, 'u1')
    t.equal(ra.status, 200, 'the request in flight on A completed')
  })

  await t.test('an upstream\'s failover and timeouts change at runtime, for configured and code routes', async (t) => {
    t.equal((await change(a, (c) => { c.routes.push({ path: '/fo', upstream: 'dead' }) })).status, 200)
    await until(async () => (await who(b, '/fo/x')) !== 404, 5000, 'B routes /fo')
    t.ok(Number(await who(b, '/fo/x')) >= 502, 'the dead upstream fails on a configured route')
    t.ok(Number(await who(b, '/own/x')) >= 502, '...and on the app\'s own proxied route')

    t.equal((await change(a, (c) => { c.upstreams.dead.failover = { maxRetries: 0, fallback: 'two' } })).status, 200)
    await until(async () => (await who(b, '/fo/x')) === 'u2', 5000, 'B falls back to two on /fo')
    t.equal(await who(b, '/own/x'), 'u2', 'the code route (no failover of its own) takes the new upstream failover')
    t.equal(await who(a, '/own/x'), 'u2', 'on A as well')

    // failover.timeout: the deadline of the whole request
    t.equal(await who(b, '/api/slow/600'), 'u1', 'a slow answer passes with no deadline')
    t.equal((await change(a, (c) => { c.upstreams.one.failover = { timeout: '250ms', maxRetries: 0 } })).status, 200)
    await until(async () => (await who(b, '/api/slow/2000')) === 504, 5000, 'B applies the deadline')
    t.pass('failover.timeout applies on B: 504')

    // upstream timeouts.headers
    t.equal((await change(a, (c) => {
      delete c.upstreams.one.failover
      c.upstreams.one.timeouts = { headers: '200ms' }
    })).status, 200)
    // undici checks headersTimeout on its coarse timers (~0.5 s ticks): a 3 s answer is far past 200 ms either way
    await until(async () => (await who(b, '/api/slow/3000')) === 504 && (await who(b, '/api/x')) === 'u1', 10_000, 'B applies timeouts.headers')
    t.equal((await change(a, (c) => { delete c.upstreams.one.timeouts })).status, 200)
    await until(async () => (await who(b, '/api/slow/600')) === 'u1', 5000, 'B drops the timeout')
    t.pass('timeouts.headers applies and is lifted again')
  })

  await t.test('a circuitBreaker added at runtime opens on the dead target', async (t) => {
    t.equal((await change(a, (c) => {
      c.upstreams.dead.failover = { maxRetries: 0 }
      c.upstreams.dead.circuitBreaker = { consecutiveFailures: 2, openDuration: '30s' }
    })).status, 200)
    await until(async () => (await who(b, '/fo/x')) === 503, 5000, 'B opens the circuit', 20)
    const st = (await get(`${b.url}/gateway/status`, { headers: AUTH })).body
    t.equal(st.upstreams.dead.targets[0].circuit, 'open', 'the status page shows the open circuit')
  })

  await t.test('a node booted later serves the store\'s routes, not its file\'s', async (t) => {
    const c = await startNode('gw-c') // its file has the seed: /api -> one only
    t.equal(await who(c, '/api/orders/1'), 'u2', 'the store\'s /api/orders')
    const codes = [await who(c, '/fo/x'), await who(c, '/fo/x'), await who(c, '/fo/x')]
    t.same(codes, [502, 502, 503], 'the store\'s /fo, with its circuitBreaker options (open after 2 failures)')
    t.equal(await who(c, '/long/x'), 404, 'a route removed before it booted is not served')
  })
})

async function closedPort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  await new Promise((resolve) => srv.close(resolve))
  return port
}
