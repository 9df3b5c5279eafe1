// The rate-limit plugin through Fastify (inject): hook placement, answers, headers, keys, shadow, allow list, policies.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import metrics from '../plugins/metrics.js'
import rateLimit, { type RateLimitPluginOptions } from '../plugins/rate-limit.js'
import type { Decision, LimitRule, RateLimitStore } from '../lib/ratelimit/types.js'

/** An in-test fixed-window store: exact, in memory, optionally failing. */
class FakeStore implements RateLimitStore {
  used = new Map<string, number>()
  keys = new Set<string>()
  down = false
  calls = 0
  async consume (key: string, rule: LimitRule, cost: number): Promise<Decision> {
    this.calls++
    if (this.down) throw new Error('store down')
    this.keys.add(key)
    const u = this.used.get(key) ?? 0
    if (u + cost > rule.limit) return { allowed: false, limit: rule.limit, remaining: 0, resetMs: rule.window, retryAfterMs: rule.window }
    this.used.set(key, u + cost)
    return { allowed: true, limit: rule.limit, remaining: rule.limit - u - cost, resetMs: rule.window, retryAfterMs: 0 }
  }
}

const ten = { algorithm: 'fixed_window' as const, limit: 3, window: 10_000 }

async function build (opts: RateLimitPluginOptions, routes: (app: FastifyInstance) => void, before?: (app: FastifyInstance) => void): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(metrics, { defaultMetrics: false })
  before?.(app)
  await app.register(rateLimit, opts)
  routes(app)
  await app.ready()
  return app
}

async function hit (app: FastifyInstance, url: string, headers: Record<string, string> = {}, remoteAddress = '10.0.0.1'): Promise<{ status: number, headers: Record<string, unknown>, body: any }> {
  const res = await app.inject({ method: 'GET', url, headers, remoteAddress })
  let body: unknown
  try { body = res.json() } catch { body = res.body }
  return { status: res.statusCode, headers: res.headers, body }
}

t.test('limits routes declared before and after the plugin; 429 JSON with Retry-After and draft headers', async (t) => {
  const store = new FakeStore()
  const app = await build({ store },
    (app) => { app.get('/after', { config: { rateLimit: ten } }, async () => 'ok') },
    (app) => { app.get('/before', { config: { rateLimit: ten } }, async () => 'ok') })
  t.teardown(() => app.close())
  for (const url of ['/before', '/after']) {
    const statuses: number[] = []
    for (let i = 0; i < 5; i++) statuses.push((await hit(app, url)).status)
    t.same(statuses, [200, 200, 200, 429, 429], url)
  }
  const ok = await hit(app, '/before', {}, '10.0.0.2')
  t.equal(ok.headers['ratelimit-policy'], '"3-per-10s";q=3;w=10')
  t.equal(ok.headers.ratelimit, '"3-per-10s";r=2;t=10')
  t.equal(ok.headers['x-ratelimit-limit'], undefined, 'legacy headers are an option')
  const no = await hit(app, '/before', {}, '10.0.0.1')
  t.equal(no.status, 429)
  t.equal(no.headers['retry-after'], '10')
  t.match(no.headers['content-type'], /application\/json/)
  t.same(no.body, { statusCode: 429, code: 'FHG_ERR_RATE_LIMITED', error: 'Too Many Requests', message: 'Rate limit exceeded: retry in 10 s' })
  t.equal(no.headers.ratelimit, '"3-per-10s";r=0;t=10')
})

t.test('a route without limits pays no store call and gets no headers; default rules apply to routes without their own', async (t) => {
  const store = new FakeStore()
  const app = await build({ store, default: { ...ten, limit: 1 } }, (app) => {
    app.get('/free', { config: { rateLimit: false } }, async () => 'ok')
    app.get('/none', { config: { rateLimit: [] } }, async () => 'ok')
    app.get('/defaulted', async () => 'ok')
  })
  t.teardown(() => app.close())
  for (let i = 0; i < 3; i++) {
    const r = await hit(app, '/free')
    t.equal(r.status, 200)
    t.equal(r.headers.ratelimit, undefined)
    t.equal((await hit(app, '/none')).status, 200)
  }
  t.equal(store.calls, 0)
  t.equal((await hit(app, '/defaulted')).status, 200)
  t.equal((await hit(app, '/defaulted')).status, 429)
})

t.test('runs before the body is parsed: a limited request never reaches the parser', async (t) => {
  const store = new FakeStore()
  let parsed = 0
  const app = await build({ store }, (app) => {
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => { parsed++; done(null, JSON.parse(body as string)) })
    app.post('/p', { config: { rateLimit: { ...ten, limit: 1 } } }, async (req) => req.body)
  })
  t.teardown(() => app.close())
  const post = async (): Promise<number> => (await app.inject({ method: 'POST', url: '/p', payload: '{"a":1}', headers: { 'content-type': 'application/json' } })).statusCode
  t.equal(await post(), 200)
  t.equal(await post(), 429)
  t.equal(parsed, 1)
})

t.test('several limits: all must allow; headers report the most restrictive; legacy headers on request', async (t) => {
  const store = new FakeStore()
  const app = await build({ store, headers: 'both' }, (app) => {
    app.get('/two', { config: { rateLimit: [{ algorithm: 'fixed_window', limit: 5, window: 1000 }, { algorithm: 'fixed_window', limit: 3, window: 60_000 }] } }, async () => 'ok')
  })
  t.teardown(() => app.close())
  const first = await hit(app, '/two')
  t.equal(first.headers['ratelimit-policy'], '"5-per-1s";q=5;w=1, "3-per-1m";q=3;w=60')
  t.equal(first.headers.ratelimit, '"3-per-1m";r=2;t=60')
  t.equal(first.headers['x-ratelimit-limit'], '3')
  t.equal(first.headers['x-ratelimit-remaining'], '2')
  t.equal(first.headers['x-ratelimit-reset'], '60')
  await hit(app, '/two')
  await hit(app, '/two')
  const refused = await hit(app, '/two')
  t.equal(refused.status, 429, 'the per-minute limit refuses although the per-second one allows')
  t.equal(refused.headers['retry-after'], '60')
})

t.test('keys: a forged X-Forwarded-For opens no new budget; trustProxy reads it; header keys get separate budgets', async (t) => {
  const store = new FakeStore()
  const app = await build({ store }, (app) => {
    app.get('/ip', { config: { rateLimit: { ...ten, limit: 2 } } }, async () => 'ok')
    app.get('/h', { config: { rateLimit: { ...ten, limit: 2, key: 'header:X-Api-Key' } } }, async () => 'ok')
    app.get('/fn', { config: { rateLimit: { ...ten, limit: 1, key: (r: { headers: Record<string, unknown> }) => String(r.headers['x-tenant'] ?? '') } } }, async () => 'ok')
  })
  t.teardown(() => app.close())
  const forged = []
  for (let i = 0; i < 4; i++) forged.push((await hit(app, '/ip', { 'x-forwarded-for': `6.6.6.${i}` })).status)
  t.same(forged, [200, 200, 429, 429])
  for (const key of ['a', 'b']) {
    const s = []
    for (let i = 0; i < 3; i++) s.push((await hit(app, '/h', { 'x-api-key': key })).status)
    t.same(s, [200, 200, 429], `key ${key} has its own budget`)
  }
  t.equal((await hit(app, '/fn', { 'x-tenant': 't1' })).status, 200)
  t.equal((await hit(app, '/fn', { 'x-tenant': 't1' })).status, 429)
  t.equal((await hit(app, '/fn', { 'x-tenant': 't2' })).status, 200)

  const trusting = await build({ store: new FakeStore(), trustProxy: true }, (app) => {
    app.get('/ip', { config: { rateLimit: { ...ten, limit: 1 } } }, async () => 'ok')
  })
  t.teardown(() => trusting.close())
  t.equal((await hit(trusting, '/ip', { 'x-forwarded-for': '6.6.6.1' })).status, 200)
  t.equal((await hit(trusting, '/ip', { 'x-forwarded-for': '6.6.6.1' })).status, 429)
  t.equal((await hit(trusting, '/ip', { 'x-forwarded-for': '6.6.6.2' })).status, 200, 'trustProxy: the forwarded address is the client')
})

t.test('shadow limits count and log but never refuse; the allow list skips limiting', async (t) => {
  const store = new FakeStore()
  const lines: Array<Record<string, unknown>> = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (s: string) => { lines.push(JSON.parse(s)) } } } })
  await app.register(metrics, { defaultMetrics: false })
  await app.register(rateLimit, { store, allowList: ['192.168.0.0/16'] })
  app.get('/s', { config: { rateLimit: { ...ten, limit: 1, shadow: true } } }, async () => 'ok')
  app.get('/a', { config: { rateLimit: { ...ten, limit: 1 } } }, async () => 'ok')
  await app.ready()
  t.teardown(() => app.close())
  for (let i = 0; i < 4; i++) {
    const r = await hit(app, '/s')
    t.equal(r.status, 200)
    t.equal(r.headers.ratelimit, undefined, 'a shadow limit advertises nothing')
  }
  t.equal(lines.filter((l) => l.msg === 'shadow rate limit exceeded (not enforced)').length, 1, 'logged once a second at most')
  for (let i = 0; i < 3; i++) t.equal((await hit(app, '/a', {}, '192.168.4.5')).status, 200, 'allow-listed')
  const text = await (await app.inject('/metrics')).body
  t.match(text, /ratelimit_decisions_total\{route="\/s",decision="shadow_limited"\} 3/)
  t.match(text, /ratelimit_decisions_total\{route="\/s",decision="allowed"\} 1/)
  t.match(text, /ratelimit_store_duration_seconds_count 4/)
})

t.test('store failing: fail_open serves without headers, fail_closed answers 503 with Retry-After; metrics show it', async (t) => {
  for (const policy of ['fail_open', 'fail_closed'] as const) {
    const store = new FakeStore()
    store.down = true
    const app = await build({ store, onStoreError: policy }, (app) => {
      app.get('/x', { config: { rateLimit: ten } }, async () => 'ok')
    })
    t.teardown(() => app.close())
    const r = await hit(app, '/x')
    if (policy === 'fail_open') {
      t.equal(r.status, 200)
      t.equal(r.headers.ratelimit, undefined)
    } else {
      t.equal(r.status, 503)
      t.equal(r.headers['retry-after'], '1')
      t.equal(r.body.code, 'FHG_ERR_RATE_LIMIT_UNAVAILABLE')
    }
    const text = (await app.inject('/metrics')).body
    t.match(text, new RegExp(`ratelimit_decisions_total\\{route="/x",decision="${policy === 'fail_open' ? 'error_open' : 'error_closed'}"\\} 1`))
    t.match(text, /ratelimit_store_errors_total 1/)
    t.match(text, /ratelimit_degraded 1/)
    store.down = false
    t.equal((await hit(app, '/x')).status, 200)
    t.match((await app.inject('/metrics')).body, /ratelimit_degraded 0/)
  }
})

t.test('a bad limit in a route declared after the plugin fails boot with its path', async (t) => {
  const app = Fastify({ logger: false })
  await app.register(rateLimit, { store: new FakeStore() })
  t.throws(() => app.get('/bad', { config: { rateLimit: { algorithm: 'fixed_window', limit: 0, window: 1000 } } }, async () => 'ok'), /route \/bad: rateLimit\.limit/)
  await app.close()
})

t.test('takes the validated config as plugins/gateway.ts will pass it: global options, route rules in route config', async (t) => {
  const { validateConfig } = await import('../lib/config/index.js')
  const config = validateConfig({
    upstreams: { u: { targets: [{ id: 'a', url: 'http://127.0.0.1:9' }] } },
    routes: [
      { path: '/users', upstream: 'u', rateLimit: { algorithm: 'sliding_window', limit: 2, window: '1m', key: 'header:X-User' } },
      { path: '/open', upstream: 'u', rateLimit: [] },
      { path: '/other', upstream: 'u' },
    ],
    rateLimit: { headers: 'legacy', allowList: ['10.9.0.0/16'], default: { algorithm: 'fixed_window', limit: 1, window: '1h' } },
  })
  const { default: _folded, ...global } = config.rateLimit // defaults are already folded into each route's rules
  const opts: RateLimitPluginOptions = { ...global, clusterName: config.cluster.name, redis: config.cluster.redis }
  const app = Fastify({ logger: false })
  await app.register(rateLimit, opts)
  for (const route of config.routes) {
    app.get(route.path, { config: { rateLimit: route.rateLimit } }, async () => 'ok')
  }
  await app.ready()
  t.teardown(() => app.close())
  t.same([(await hit(app, '/users', { 'x-user': 'a' })).status, (await hit(app, '/users', { 'x-user': 'a' })).status,
    (await hit(app, '/users', { 'x-user': 'a' })).status, (await hit(app, '/users', { 'x-user': 'b' })).status], [200, 200, 429, 200])
  const r = await hit(app, '/users', { 'x-user': 'c' })
  t.equal(r.headers['x-ratelimit-limit'], '2', 'legacy headers from the global option')
  t.equal(r.headers.ratelimit, undefined)
  t.same([(await hit(app, '/open')).status, (await hit(app, '/open')).status], [200, 200], '[]: no limit')
  t.same([(await hit(app, '/other')).status, (await hit(app, '/other')).status], [200, 429], 'rateLimit.default applies')
  t.same([(await hit(app, '/other', {}, '10.9.1.1')).status, (await hit(app, '/other', {}, '10.9.1.1')).status], [200, 200], 'allow list')
})

t.test('onStoreError local: limit ÷ the live nodes of the cluster plugin when it is registered', async (t) => {
  const store = new FakeStore()
  store.down = true
  const app = await build({ store, onStoreError: 'local' }, (app) => {
    app.get('/l', { config: { rateLimit: { ...ten, limit: 8 } } }, async () => 'ok')
  }, (app) => { app.decorate('cluster', { nodes: () => [{}, {}, {}, {}] } as never) })
  t.teardown(() => app.close())
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push((await hit(app, '/l')).status)
  t.same(statuses, [200, 200, 429, 429], '8 ÷ 4 nodes = 2 on this node')
  t.match((await app.inject('/metrics')).body, /ratelimit_decisions_total\{route="\/l",decision="local"\} 4/)
})
