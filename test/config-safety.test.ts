// Issue 11, point 5: a config PUT is all or nothing, and cheap to check. Two gateway nodes on one real
// redis-server and a real upstream whose probe hits are counted; a third node alone for the 20k-route PUT.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { loadConfigFile, validateConfig } from '../lib/config/index.js'
import gateway from '../plugins/gateway.js'
import { get } from './helpers/gateway.js'
import { startHealthUpstream, type HealthUpstream } from './helpers/health-upstream.js'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import { until } from './helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-config-safety-'))
const TOKEN = 'config-safety-admin-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const CLUSTER = `cs${process.pid}`

let redis: RedisProcess
let up: HealthUpstream
const apps: FastifyInstance[] = []

t.before(async () => { [redis, up] = await Promise.all([startRedis(), startHealthUpstream()]) })
t.teardown(async () => {
  for (const app of apps) await app.close().catch(() => {})
  await up.close()
  await redis.stop()
})

type Shared = { upstreams: Record<string, any>, routes: Array<Record<string, any>> }
const probe = (interval: string | number): Record<string, unknown> => ({ active: { type: 'http', path: '/health', interval, healthyThreshold: 1, unhealthyThreshold: 1 } })
const seed = (): Shared => ({
  upstreams: { svc: { targets: [{ id: 'svc-1', url: up.url }], healthCheck: probe('1s') } },
  routes: [{ path: '/api', upstream: 'svc' }],
})

interface Node { app: FastifyInstance, url: string, admin: string }
async function startNode (id: string, opts: { prefix?: string, redis?: boolean, shared?: Shared } = {}): Promise<Node> {
  const prefix = opts.prefix ?? '/gateway'
  const app = Fastify({ logger: false, forceCloseConnections: 'idle' })
  apps.push(app)
  await app.register(gateway, {
    config: validateConfig({
      node: { id, host: '127.0.0.1', port: 0 },
      cluster: { name: CLUSTER, heartbeatInterval: '300ms', snapshotPath: join(dir, `${id}.json`), ...(opts.redis === false ? {} : { redis: redis.url }) },
      ...(opts.shared ?? seed()),
      admin: { token: TOKEN, prefix },
    }),
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  return { app, url, admin: `${url}${prefix}` }
}

async function put (n: Node, version: number, body: unknown): Promise<Awaited<ReturnType<typeof get>>> {
  return await get(`${n.admin}/config`, {
    method: 'PUT',
    headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(version) },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}
const stored = async (n: Node): Promise<{ version: number, config: Shared }> => (await get(`${n.admin}/config`, { headers: AUTH })).body
const view = async (n: Node): Promise<any> => (await get(`${n.admin}/cluster`, { headers: AUTH })).body
const status = async (n: Node): Promise<any> => (await get(`${n.admin}/status`, { headers: AUTH })).body
const probes = (): number => up.hits.get('/health') ?? 0

/** Probe hits within `ms`. */
async function probesIn (ms: number): Promise<number> {
  const before = probes()
  await new Promise((resolve) => setTimeout(resolve, ms))
  return probes() - before
}

t.test('a PUT is checked whole before anything is stored, and a node runs one version in full', async (t) => {
  const a = await startNode('gw-a')
  const b = await startNode('gw-b', { prefix: '/ops' })
  await until(async () => (await view(a)).nodes.every((n: any) => n.configVersion === 1) && (await view(a)).nodes.length === 2, 10_000, 'both nodes on version 1')

  await t.test('durations the code cannot run at 0 are refused by path, and nothing reaches Redis', async (t) => {
    for (const [edit, path] of [
      [(c: Shared) => { c.upstreams.svc.healthCheck = probe(0) }, 'upstreams.svc.healthCheck.active.interval'],
      [(c: Shared) => { c.upstreams.svc.healthCheck = probe('0s') }, 'upstreams.svc.healthCheck.active.interval'],
      [(c: Shared) => { c.upstreams.svc.circuitBreaker = { openDuration: 0 } }, 'upstreams.svc.circuitBreaker.openDuration'],
      [(c: Shared) => { c.upstreams.svc.circuitBreaker = { window: '0ms' } }, 'upstreams.svc.circuitBreaker.window'],
      [(c: Shared) => { c.routes[0].cache = { ttl: 0 } }, 'routes[0].cache.ttl'],
    ] as const) {
      const doc = seed()
      edit(doc)
      const res = await put(a, 1, doc)
      t.equal(res.status, 400, `${path}: 400`)
      t.ok(res.body.issues.some((i: any) => i.path === path), `the issue names ${path}`)
    }
    t.equal((await stored(a)).version, 1, 'the store still holds version 1')
    t.equal((await stored(b)).version, 1, 'read from B too')
    t.ok(await probesIn(2500) >= 2, 'both nodes still probe the upstream')
  })

  await t.test('a later good PUT changes the health checks on every node', async (t) => {
    const doc = seed()
    doc.upstreams.svc.healthCheck = probe('100ms')
    const res = await put(a, 1, doc)
    t.equal(res.status, 200, 'accepted')
    await until(async () => (await view(a)).nodes.every((n: any) => n.configVersion === 2), 10_000, 'both nodes on version 2')
    const n = await probesIn(1000)
    t.ok(n >= 8, `two nodes probing every 100 ms: ${n} probes in 1 s`)
  })

  await t.test('a node that cannot apply a version keeps the previous one, says so, and applies the next good one', async (t) => {
    // /ops is B's admin prefix: valid on A, refused by B's own cross-checks
    const bad = seed()
    bad.upstreams.svc.healthCheck = probe('100ms')
    bad.routes.push({ path: '/ops/extra', upstream: 'svc' })
    const res = await put(a, 2, bad)
    t.equal(res.status, 200, 'A applies version 3')
    await until(async () => (await view(b)).configRefused?.version === 3, 10_000, 'B refuses version 3')
    const bView = await view(b)
    t.equal(bView.nodes.find((n: any) => n.id === 'gw-b').configVersion, 2, 'B reports version 2 in {admin}/cluster')
    t.match(bView.configRefused.error, /routes\[1\]\.path/, 'and why it refused version 3')
    const bStatus = await status(b)
    t.equal(bStatus.configVersion, 2, 'and in {admin}/status')
    t.equal(bStatus.configRefused.version, 3)
    t.equal((await view(a)).nodes.find((n: any) => n.id === 'gw-b').configVersion, 2, 'A sees B on version 2')
    t.equal((await get(`${b.url}/api/x`)).status, 200, 'B still routes version 2')

    const good = seed()
    good.upstreams.svc.healthCheck = probe('150ms')
    good.routes.push({ path: '/later', upstream: 'svc' })
    t.equal((await put(a, 3, good)).status, 200, 'version 4 accepted')
    await until(async () => (await status(b)).configVersion === 4, 10_000, 'B applies version 4')
    t.equal((await status(b)).configRefused, undefined, 'nothing refused any more')
    t.equal((await get(`${b.url}/later/x`)).status, 200, 'B routes the new route')
    t.ok(await probesIn(1000) >= 6, 'and probes with the new interval')
  })

  await t.test('health options that fail to start leave the running checks in place; the next good ones restart them', async (t) => {
    const bad = { active: { type: 'http' as const, path: '/health', interval: 0, timeout: 1, healthyThreshold: 1, unhealthyThreshold: 1 } }
    t.throws(() => b.app.gatewayHealth.configure('svc', bad), { code: 'FHG_ERR_INVALID_CONFIG' })
    t.throws(() => a.app.gatewayHealth.configure('svc', bad), { code: 'FHG_ERR_INVALID_CONFIG' })
    t.ok(await probesIn(1000) >= 4, 'the running checks still probe')
    const good = { active: { type: 'http' as const, path: '/health', interval: 120, timeout: 100, healthyThreshold: 1, unhealthyThreshold: 1 } }
    t.equal(a.app.gatewayHealth.configure('svc', good), true, 'A restarts with good options')
    t.equal(b.app.gatewayHealth.configure('svc', good), true, 'B too')
    t.ok(await probesIn(1000) >= 6, 'and probes')
  })

  await t.test('keys that reach a prototype are refused by path; absurd bodies get 400 and 413', async (t) => {
    const cur = (await stored(a)).version
    const withKey = JSON.stringify(seed()).replace('"path":"/api"', '"path":"/api","constructor":{"x":1}')
    let res = await put(a, cur, withKey)
    t.equal(res.status, 400)
    t.same(res.body.issues[0].path, 'routes[0].constructor', 'constructor named by path')
    res = await put(a, cur, JSON.stringify(seed()).replace('"id":"svc-1"', '"id":"svc-1","metadata":{"__proto__":{"weight":0}}'))
    t.equal(res.status, 400)
    t.same(res.body.issues[0].path, 'upstreams.svc.targets[0].metadata.__proto__', '__proto__ named by path')
    const deep = `{"upstreams":{"svc":{"targets":[{"id":"x","url":"http://127.0.0.1:1","metadata":${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}}]}},"routes":[]}`
    res = await put(a, cur, deep)
    t.equal(res.status, 400, 'nesting deeper than any config: 400')
    t.match(res.body.message, /nested deeper than/)
    res = await put(a, cur, '{"routes":[' + '"x",'.repeat(5_000_000) + '"x"]}')
    t.equal(res.status, 413, 'a body past the limit: 413')
    t.equal((await stored(a)).version, cur, 'nothing stored')
  })
})

/** The issue paths of what `fn` throws. */
function pathsOf (fn: () => unknown): string[] {
  try { fn() } catch (err) { return ((err as { issues?: Array<{ path: string }> }).issues ?? []).map((i) => i.path) }
  return []
}

t.test('a YAML file and an options object refuse the same keys by path', async (t) => {
  const file = join(dir, 'proto.yaml')
  writeFileSync(file, 'upstreams: {}\n__proto__:\n  admin: { token: hidden-token-value }\n')
  t.same(pathsOf(() => loadConfigFile(file, {})), ['__proto__'], 'YAML __proto__ refused, not hidden config')
  writeFileSync(file, 'upstreams:\n  constructor:\n    targets: [{ id: a, url: "http://127.0.0.1:1" }]\n')
  t.same(pathsOf(() => loadConfigFile(file, {})), ['upstreams.constructor'], 'YAML constructor refused')
  const app = Fastify({ logger: false })
  const opts = { upstreams: { svc: { targets: [{ id: 'a', url: 'http://127.0.0.1:1', metadata: JSON.parse('{"__proto__":{"x":1}}') }] } } }
  void app.register(gateway, opts as any)
  const err = await app.ready().then(() => undefined, (e: unknown) => e as { issues?: Array<{ path: string }> })
  t.same(err?.issues?.map((i) => i.path), ['upstreams.svc.targets[0].metadata.__proto__'], 'an options object: refused at boot, by path')
  await app.close().catch(() => {})
  t.same(pathsOf(() => validateConfig({ upstreams: {}, routes: [{ path: '/x', upstream: 'toString' }] })), ['routes[0].upstream'],
    'an inherited name is no upstream')
})

t.test('a PUT of 20,000 routes is accepted and applied while /health keeps answering', async (t) => {
  // no probes here: a probe timing out on a loaded machine is not what this test is about
  const plain = (): Shared => ({ upstreams: { svc: { targets: [{ id: 'svc-1', url: up.url }] } }, routes: [{ path: '/api', upstream: 'svc' }] })
  const c = await startNode('gw-c', { redis: false, shared: plain() })
  const doc = plain()
  for (let i = 0; i < 20_000; i++) doc.routes.push({ path: `/svc${i}/api`, upstream: 'svc', ...(i % 7 === 0 ? { rateLimit: { algorithm: 'sliding_window', limit: 100, window: '1s' } } : {}) })
  let worst = 0
  let polls = 0
  let done = false
  const poll = (async () => {
    while (!done) {
      const t0 = performance.now()
      const r = await get(`${c.url}/health`)
      if (r.status === 200) polls++
      worst = Math.max(worst, performance.now() - t0)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()
  const t0 = performance.now()
  const res = await put(c, 1, doc)
  const took = performance.now() - t0
  done = true
  await poll
  t.equal(res.status, 200, 'accepted')
  t.comment(`20,000 routes: PUT answered in ${Math.round(took)} ms; slowest /health meanwhile ${Math.round(worst)} ms over ${polls} polls`)
  t.ok(worst < 1000, `/health answered within 1 s throughout (slowest ${Math.round(worst)} ms)`)
  t.equal((await get(`${c.url}/svc19999/api/x`)).status, 200, 'the last route routes')

  const bad = plain()
  for (let i = 0; i < 14_000; i++) bad.routes.push({ path: `svc${i}`, upstream: 'svc', strategy: 'nope' })
  const refused = await put(c, 2, bad)
  t.equal(refused.status, 400, '14,000 invalid routes: 400')
  t.equal(refused.body.issues.length, 51, 'the first 50 issues and a count of the rest')
  t.match(refused.body.issues[50].message, /more issues/)
})
