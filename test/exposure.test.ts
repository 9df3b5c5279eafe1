// What is exposed and to whom (issue 11, point 6): tokens fit to use, admin and metrics on listeners of
// their own, failed authentications logged and throttled per client, one audit line per admin write.
import net from 'node:net'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway, startNode } from '../plugins/gateway.js'
import { ConfigError, validateConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { tokenFingerprint } from '../lib/admin-auth.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { freePort } from './helpers/redis.js'
import { sleep } from './helpers/health-upstream.js'

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(1, 'x') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

const TOKEN = 'exposure-admin-token-0123'
const METRICS_TOKEN = 'exposure-metrics-token-0123'

function config (extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput {
  return {
    node: { id: 'gw-expose', port: 0 },
    upstreams: { users: { targets: [{ id: 'users-1', url: ups[0].url }] } },
    routes: [{ path: '/users', upstream: 'users' }],
    admin: { token: TOKEN },
    ...extra,
  }
}

/** A gateway on 127.0.0.1 whose log lines are kept in `lines`. */
async function boot (opts: GatewayConfigInput): Promise<{ app: FastifyInstance, url: string, lines: Array<Record<string, unknown>>, raw: string[] }> {
  const raw: string[] = []
  const lines: Array<Record<string, unknown>> = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (s: string) => { raw.push(s); lines.push(JSON.parse(s)) } } } })
  await app.register(gateway, opts)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${addr.port}`, lines, raw }
}

const bearer = (token: string): { headers: Record<string, string> } => ({ headers: { authorization: `Bearer ${token}` } })

async function refused (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', () => resolve(true))
  })
}

t.test('a short token, or one with whitespace around it, fails boot naming the key and never quoting it', async (t) => {
  const cases: Array<[string, Partial<GatewayConfigInput>, string]> = [
    ['admin token of 15 characters', { admin: { token: 'fifteen-chars-x' } }, 'admin.token'],
    ['admin token with a trailing newline', { admin: { token: `${TOKEN}\n` } }, 'admin.token'],
    ['admin token with a leading space', { admin: { token: ` ${TOKEN}` } }, 'admin.token'],
    ['metrics token of 8 characters', { metrics: { token: 'short-mt' } }, 'metrics.token'],
    ['admin.listen on the traffic port', { node: { port: 8080 }, admin: { token: TOKEN, listen: '0.0.0.0:8080' } }, 'admin.listen'],
    ['metrics.listen not host:port', { metrics: { listen: '9100' } }, 'metrics.listen'],
  ]
  for (const [name, extra, path] of cases) {
    const err = t.throws(() => validateConfig(config(extra)), ConfigError, name) as unknown as ConfigError
    t.ok(err.issues.some((i) => i.path === path), `${name}: the error names ${path}`)
    const secret = (path.endsWith('token') ? (extra.admin?.token ?? extra.metrics?.token ?? '') : '').trim()
    if (secret !== '') t.notOk(err.message.includes(secret), `${name}: the message does not quote the token`)
  }
  // through the plugin, as an app registers it
  const app = Fastify({ logger: false })
  await t.rejects(async () => { await app.register(gateway, config({ admin: { token: 'too-short' } })) }, /admin\.token/)
  await app.close()
})

t.test('admin.listen and metrics.listen: those routes answer only on their own ports, closed with the app', async (t) => {
  const adminPort = await freePort()
  const metricsPort = await freePort()
  const { app, url, lines } = await boot(config({
    admin: { token: TOKEN, listen: `127.0.0.1:${adminPort}` },
    metrics: { token: METRICS_TOKEN, listen: `127.0.0.1:${metricsPort}` },
  }))
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const metricsUrl = `http://127.0.0.1:${metricsPort}`

  const listening = lines.map((l) => String(l.msg)).filter((m) => m.includes('listening at') || m.includes('.listen: '))
  t.same(listening.sort(), [`admin.listen: http://127.0.0.1:${adminPort}`, `metrics.listen: http://127.0.0.1:${metricsPort}`, `Server listening at ${url}`].sort(),
    'each listener logs its own line; "Server listening at" names only the traffic port')
  t.equal((await get(`${url}/gateway/status`, bearer(TOKEN))).status, 404, 'admin status is not on the traffic port')
  t.equal((await get(`${url}/metrics`, bearer(METRICS_TOKEN))).status, 404, 'metrics are not on the traffic port')
  t.equal((await get(`${url}/health`)).status, 200, '/health stays on the traffic port')
  t.equal((await get(`${url}/users/1`)).status, 200, 'traffic still flows')

  t.equal((await get(`${adminUrl}/gateway/status`)).status, 401, 'admin port: no token, 401')
  const st = await get(`${adminUrl}/gateway/status`, bearer(TOKEN))
  t.equal(st.status, 200, 'admin port: the token opens status')
  t.equal(st.body.node.id, 'gw-expose', 'status reads the app\'s state')
  t.ok(st.body.upstreams.users, 'status lists the app\'s upstreams')
  t.equal((await get(`${adminUrl}/users/1`)).status, 404, 'the admin port proxies nothing')
  t.equal((await get(`${adminUrl}/metrics`, bearer(METRICS_TOKEN))).status, 404, 'the admin port serves no metrics')

  t.equal((await get(`${metricsUrl}/metrics`)).status, 401, 'metrics port: no token, 401')
  t.equal((await get(`${metricsUrl}/metrics`, bearer(TOKEN))).status, 401, 'metrics port: the admin token is not the metrics token')
  const m = await get(`${metricsUrl}/metrics`, bearer(METRICS_TOKEN))
  t.equal(m.status, 200, 'metrics port: the metrics token opens /metrics')
  t.match(m.text, /fhg_|# HELP/, 'Prometheus text')
  t.equal((await get(`${metricsUrl}/gateway/status`, bearer(TOKEN))).status, 404, 'the metrics port serves no admin route')

  await app.close()
  t.ok(await refused(adminPort), 'the admin port is closed with the app')
  t.ok(await refused(metricsPort), 'the metrics port is closed with the app')
})

t.test('admin and metrics may share one listener', async (t) => {
  const port = await freePort()
  const { app } = await boot(config({ admin: { token: TOKEN, listen: `127.0.0.1:${port}` }, metrics: { listen: `127.0.0.1:${port}` } }))
  t.teardown(() => app.close())
  t.equal((await get(`http://127.0.0.1:${port}/gateway/status`, bearer(TOKEN))).status, 200, 'admin on the shared port')
  t.equal((await get(`http://127.0.0.1:${port}/metrics`)).status, 200, 'metrics (no token configured) on the shared port')
})

t.test('a taken admin or metrics port fails boot, naming the key; startNode too', async (t) => {
  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { blocker.close() })
  const taken = (blocker.address() as net.AddressInfo).port
  for (const key of ['admin', 'metrics'] as const) {
    const app = Fastify({ logger: false })
    const extra = key === 'admin' ? { admin: { token: TOKEN, listen: `127.0.0.1:${taken}` } } : { metrics: { listen: `127.0.0.1:${taken}` } }
    await app.register(gateway, config(extra))
    await t.rejects(app.listen({ host: '127.0.0.1', port: 0 }), new RegExp(`${key}\\.listen: cannot listen on 127\\.0\\.0\\.1:${taken}: .*EADDRINUSE`), `${key}.listen`)
    await app.close()
  }
  await t.rejects(startNode(validateConfig(config({ admin: { token: TOKEN, listen: `127.0.0.1:${taken}` } }))), /admin\.listen: cannot listen/, 'startNode')
})

t.test('failed authentications are logged without the token and throttled per client IP, then 429 with Retry-After', async (t) => {
  const { app, url, lines, raw } = await boot(config())
  t.teardown(() => app.close())
  const wrong = 'wrong-guess-of-the-token-123'
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) statuses.push((await get(`${url}/gateway/status`, bearer(wrong))).status)
  const sixth = await get(`${url}/gateway/status`, bearer(wrong))
  const right = await get(`${url}/gateway/status`, bearer(TOKEN))
  const burst = [...statuses, sixth.status, right.status]
  // a busy machine may spread the five over a window boundary: then a 6th 401 is fair, but never a 200 while throttled
  t.same(statuses, [401, 401, 401, 401, 401], 'the first five failures: 401')
  if (sixth.status === 429) {
    t.ok(Number(sixth.headers['retry-after']) >= 1, 'Retry-After in seconds')
    t.equal(sixth.body.code, 'FHG_ERR_AUTH_THROTTLED')
    t.equal(right.status, 429, 'while throttled even the right token is refused (a guess learns nothing)')
  } else {
    t.comment(`window rolled over mid-burst: ${JSON.stringify(burst)}`)
  }
  // a steady attacker: many more failures within a second are refused
  const flood = await Promise.all(Array.from({ length: 20 }, async () => (await get(`${url}/gateway/status`, bearer(wrong))).status))
  t.ok(flood.filter((s) => s === 429).length >= 10, `a flood of 20 guesses is mostly 429 (${JSON.stringify(flood)})`)

  const failures = lines.filter((l) => l.msg === 'admin authentication failed')
  t.ok(failures.length >= 5 && failures.length <= 15, `failures are logged, bounded by the throttle (${failures.length})`)
  t.equal(failures[0].clientIp, '127.0.0.1', 'the log names the client IP')
  t.equal(failures[0].route, '/gateway/status', 'and the route')
  t.notOk(raw.some((l) => l.includes(wrong) || l.includes(TOKEN)), 'no log line holds a token')

  // the block ends
  let after = 0
  for (let i = 0; i < 50 && after !== 200; i++) {
    await sleep(200)
    after = (await get(`${url}/gateway/status`, bearer(TOKEN))).status
  }
  t.equal(after, 200, 'after Retry-After the right token works again')
})

t.test('the metrics token is checked and throttled the same way', async (t) => {
  const { app, url, lines } = await boot(config({ metrics: { token: METRICS_TOKEN } }))
  t.teardown(() => app.close())
  t.equal((await get(`${url}/metrics`)).status, 401, 'no token: 401')
  t.equal((await get(`${url}/metrics`, bearer(METRICS_TOKEN))).status, 200, 'the token: 200')
  const flood = await Promise.all(Array.from({ length: 20 }, async () => (await get(`${url}/metrics`, bearer('not-the-metrics-token-x'))).status))
  t.ok(flood.includes(429), `guesses get 429 (${JSON.stringify(flood)})`)
  t.ok(lines.some((l) => l.msg === 'metrics authentication failed' && l.route === '/metrics'), 'failures logged')
})

t.test('every admin write logs one audit line: who, versions, what changed, status', async (t) => {
  const { app, url, lines, raw } = await boot(config())
  t.teardown(() => app.close())
  const cur = await get(`${url}/gateway/config`, bearer(TOKEN))
  t.equal(cur.status, 200)
  const next = {
    ...cur.body.config,
    upstreams: { ...cur.body.config.upstreams, orders: { targets: [{ id: 'orders-1', url: ups[0].url }] } },
    routes: [...cur.body.config.routes, { path: '/orders', upstream: 'orders' }],
  }
  const put = await get(`${url}/gateway/config`, { method: 'PUT', body: JSON.stringify(next), headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'if-match': `"${cur.body.version as number}"` } })
  t.equal(put.status, 200, 'the PUT is accepted')
  const stale = await get(`${url}/gateway/config`, { method: 'PUT', body: JSON.stringify(next), headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'if-match': `"${cur.body.version as number}"` } })
  t.equal(stale.status, 409, 'a stale PUT: 409')
  const bad = await get(`${url}/gateway/config`, { method: 'PUT', body: JSON.stringify({ ...next, routes: [{ path: '/x', upstream: 'nope' }] }), headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'if-match': `"${put.body.version as number}"` } })
  t.equal(bad.status, 400, 'an invalid PUT: 400')
  const unauth = await get(`${url}/gateway/config`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json', 'if-match': '"1"' } })
  t.equal(unauth.status, 401)

  const audits = lines.filter((l) => l.audit === true)
  t.equal(audits.length, 3, 'one audit line per authenticated write, none for GETs or refused tokens')
  const [ok, conflict, invalid] = audits
  t.equal(ok.tokenFingerprint, tokenFingerprint(TOKEN), 'who: the token fingerprint')
  t.match(ok.tokenFingerprint, /^sha256:[0-9a-f]{12}$/)
  t.equal(ok.clientIp, '127.0.0.1', 'who: the client IP')
  t.equal(ok.method, 'PUT')
  t.equal(ok.route, '/gateway/config')
  t.equal(ok.status, 200, 'result')
  t.equal(ok.from, cur.body.version, 'version from')
  t.equal(ok.to, put.body.version, 'version to')
  t.same(ok.changes, { keys: ['routes', 'upstreams'], upstreams: { added: ['orders'], removed: [], changed: [] }, routes: { added: ['/orders'], removed: [], changed: [] } }, 'what changed')
  t.equal(conflict.status, 409)
  t.equal(conflict.to, null, 'a refused write changed nothing')
  t.equal(invalid.status, 400)
  t.same((invalid.changes as { routes: unknown }).routes, { added: ['/x'], removed: ['/users', '/orders'], changed: [] }, 'what a refused write asked for')
  t.notOk(raw.some((l) => l.includes(TOKEN)), 'no log line holds the token')
})
