// The package's entry point (index.ts) is enough to build a gateway plugin by plugin, across real sockets:
// metrics + load balancer + rate limiter on a plain Fastify app, and an app plugin reading the route config.
import t from 'tap'
import Fastify from 'fastify'
import { request } from 'undici'
import * as api from '../index.js'
import { startUpstream } from './helpers/upstream.js'

t.test('every plugin the README names is exported', async (t) => {
  for (const name of ['gateway', 'loadBalancer', 'healthCheck', 'metrics', 'admin', 'rateLimit', 'cluster', 'responseCache', 'clusterHealth', 'discovery'] as const) {
    t.type(api[name], 'function', name)
  }
  t.type(api.routeConfigOf, 'function')
  t.type(api.startNode, 'function')
})

t.test('metrics, load balancer and rate limiter registered one by one from the package entry', async (t) => {
  const up = await startUpstream({ id: 'api-up' })
  t.teardown(() => up.kill())
  const app = Fastify({ logger: false })
  t.teardown(() => app.close())
  await app.register(api.metrics, { defaultMetrics: false })
  await app.register(api.loadBalancer, { upstreams: { users: { strategy: 'round_robin', targets: [{ id: 'u1', url: up.url }] } } })
  await app.register(api.rateLimit, {}) // no Redis: one node, in memory
  // an app hook that reads the gateway route config the way the data-path plugins do
  const seen: string[] = []
  app.addHook('onRequest', async (request) => {
    seen.push(api.routeConfigOf(request).upstream ?? '-') // typed: no cast
  })
  const limit: api.RateLimitRuleOptions = { algorithm: 'fixed_window', limit: 2, window: '10s' }
  app.get('/users/:id', { config: { upstream: 'users', rateLimit: limit } }, (_req, reply) => reply.proxy())
  app.get('/free', { config: { upstream: 'users' } }, (_req, reply) => reply.proxy())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

  const answers = []
  for (let i = 0; i < 3; i++) {
    const res = await request(`${base}/users/${i}`)
    answers.push({ status: res.statusCode, headers: res.headers, body: await res.body.text() })
  }
  t.same(answers.map((a) => a.status), [200, 200, 429], 'limit 2: the third request is refused')
  // fixed windows are aligned: t is the time left in the current one
  t.match(answers[0].headers, { 'ratelimit-policy': '"2-per-10s";q=2;w=10', ratelimit: /^"2-per-10s";r=1;t=([1-9]|10)$/ })
  t.match(JSON.parse(answers[0].body), { id: 'api-up' }, 'proxied to the upstream')
  t.ok(Number(answers[2].headers['retry-after']) >= 1, 'Retry-After on the 429')
  t.match(JSON.parse(answers[2].body), { code: 'FHG_ERR_RATE_LIMITED', statusCode: 429 })
  const free = await request(`${base}/free`)
  await free.body.dump()
  t.equal(free.statusCode, 200, 'a route with no limit is not limited')
  t.equal(free.headers.ratelimit, undefined)
  // the refused request ended in the limiter's onRequest, registered before the app's hook
  t.same(seen, ['users', 'users', 'users'], 'routeConfigOf gives the route config to app hooks')
  const metrics = await (await request(`${base}/metrics`)).body.text()
  t.match(metrics, /ratelimit_decisions_total\{route="\/users\/:id",decision="limited"\} 1/)
})
