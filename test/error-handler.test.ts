// Errors go through Fastify (issue 17, part 3): the answers the gateway gives itself (rate limit, admin, response
// cache, path guard) are raised, not written by hand, so an app's setErrorHandler sees and shapes them; with no
// handler of the app's, the bytes on the wire are what the gateway wrote before.
import t from 'tap'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import rateLimit, { type RateLimitErrorContext } from '../plugins/rate-limit.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'

let up: UpstreamProcess
t.before(async () => { up = await startUpstream({ id: 'eh-1' }) })
t.teardown(async () => { await up.kill() })

const TOKEN = 'error-handler-admin-token-0123'
const auth = { authorization: `Bearer ${TOKEN}` }

function config (): GatewayConfigInput {
  return {
    node: { id: 'gw-errors', port: 0 },
    upstreams: { u: { targets: [{ id: 'eh-1', url: up.url }] } },
    routes: [
      { path: '/limited', upstream: 'u', rateLimit: { algorithm: 'token_bucket', limit: 1, window: '1m' } },
      { path: '/cached', upstream: 'u', cache: { ttl: '30s' } },
    ],
    admin: { token: TOKEN },
  }
}

interface Seen { code: string | undefined, statusCode: number | undefined, replyStatus: number, retryAfter: unknown, issues: unknown }

type Answer = Awaited<ReturnType<typeof get>>
/** The gateway's answer over HTTP (the gateway arms socket timeouts: no inject). */
type Send = (path: string, init?: { method?: 'GET' | 'PUT', headers?: Record<string, string>, json?: unknown }) => Promise<Answer>

/** A gateway in an app, listening; with `seen`, the app's error handler records each error and answers `{ shaped: code }`. */
async function app (seen?: Seen[]): Promise<Send> {
  const app = Fastify({ logger: false })
  if (seen !== undefined) {
    app.setErrorHandler(async (err: FastifyError & { issues?: unknown }, _request, reply) => {
      seen.push({ code: err.code, statusCode: err.statusCode, replyStatus: reply.statusCode, retryAfter: reply.getHeader('retry-after'), issues: err.issues })
      return await reply.code(err.statusCode ?? 500).send({ shaped: err.code })
    })
  }
  await app.register(gateway, config())
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const { port } = app.server.address() as { port: number }
  return async (path, init = {}) => await get(`http://127.0.0.1:${port}${path}`, {
    method: init.method ?? 'GET',
    headers: { ...init.headers, ...(init.json === undefined ? {} : { 'content-type': 'application/json' }) },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  })
}

t.test("an app's setErrorHandler sees and shapes the 429, the admin 401 and 400, the cache's 504 and the path guard's 400", async (t) => {
  const seen: Seen[] = []
  const send = await app(seen)
  t.equal((await send('/limited')).status, 200, 'the first request is allowed')

  const limited = await send('/limited')
  t.equal(limited.status, 429)
  t.same(limited.body, { shaped: 'FHG_ERR_RATE_LIMITED' }, 'the body is the app\'s')
  t.equal(limited.headers['retry-after'], '60', 'Retry-After is set on the reply before the handler runs')
  t.ok(limited.headers.ratelimit !== undefined, 'and the RateLimit header')
  t.match(seen.at(-1), { code: 'FHG_ERR_RATE_LIMITED', statusCode: 429, replyStatus: 429, retryAfter: '60' })

  const unauthorized = await send('/gateway/status')
  t.equal(unauthorized.status, 401)
  t.same(unauthorized.body, { shaped: 'FHG_ERR_UNAUTHORIZED' })
  t.equal(unauthorized.headers['www-authenticate'], 'Bearer')
  t.match(seen.at(-1), { code: 'FHG_ERR_UNAUTHORIZED', statusCode: 401 })

  const bad = await send('/gateway/config', { method: 'PUT', headers: { ...auth, 'if-match': '"0"' }, json: { upstreams: 'nope' } })
  t.equal(bad.status, 400)
  t.same(bad.body, { shaped: 'FHG_ERR_INVALID_CONFIG' })
  t.match(seen.at(-1), { code: 'FHG_ERR_INVALID_CONFIG', statusCode: 400, issues: [{ path: 'upstreams' }] }, 'the handler gets the ConfigError with its issues')

  const noIfMatch = await send('/gateway/config', { method: 'PUT', headers: auth, json: {} })
  t.equal(noIfMatch.status, 428)
  t.match(seen.at(-1), { code: 'FHG_ERR_PRECONDITION_REQUIRED', statusCode: 428 })

  const notCached = await send('/cached/x', { headers: { 'cache-control': 'only-if-cached' } })
  t.equal(notCached.status, 504)
  t.same(notCached.body, { shaped: 'FHG_ERR_NOT_CACHED' })
  t.match(seen.at(-1), { code: 'FHG_ERR_NOT_CACHED', statusCode: 504, replyStatus: 504 })

  const badPath = await send('/cached/a/..%2fsecret')
  t.equal(badPath.status, 400)
  t.same(badPath.body, { shaped: 'FHG_ERR_BAD_PATH' })
  t.equal(seen.length, 6, 'one call per refusal')
})

t.test('with no error handler of the app, the answers are the bytes the gateway wrote by hand before', async (t) => {
  const send = await app()
  await send('/limited')
  const limited = await send('/limited')
  t.equal(limited.status, 429)
  t.equal(limited.headers['content-type'], 'application/json; charset=utf-8')
  t.equal(limited.headers['retry-after'], '60')
  t.equal(limited.text, '{"statusCode":429,"code":"FHG_ERR_RATE_LIMITED","error":"Too Many Requests","message":"Rate limit exceeded: retry in 60 s"}')
  const names = Object.keys(limited.headers)
  t.same(names.slice(0, 4), ['ratelimit-policy', 'ratelimit', 'retry-after', 'content-type'], 'headers in the order they were written before')

  const unauthorized = await send('/gateway/status')
  t.equal(unauthorized.text, '{"statusCode":401,"code":"FHG_ERR_UNAUTHORIZED","error":"Unauthorized","message":"Missing or invalid admin token"}')
  t.equal(unauthorized.headers['www-authenticate'], 'Bearer')

  const bad = await send('/gateway/config', { method: 'PUT', headers: { ...auth, 'if-match': '"0"' }, json: { upstreams: 'nope' } })
  t.equal(bad.status, 400)
  const body = bad.body
  t.same(Object.keys(body), ['statusCode', 'code', 'error', 'message', 'issues'], 'ConfigError keeps its issues (the route\'s ERROR_BODY_SCHEMA)')
  t.match(body.issues, [{ path: 'upstreams', message: String }])

  const stale = await send('/gateway/config', { method: 'PUT', headers: { ...auth, 'if-match': '"7"' }, json: { upstreams: {}, routes: [] } })
  t.equal(stale.status, 409)
  t.equal(stale.headers.etag, '"1"')
  t.equal(stale.text, '{"statusCode":409,"code":"FHG_ERR_CONFIG_CONFLICT","error":"Conflict","message":"Stale config version: the store holds version 1","currentVersion":1}')

  const notCached = await send('/cached/x', { headers: { 'cache-control': 'only-if-cached' } })
  t.equal(notCached.text, '{"statusCode":504,"code":"FHG_ERR_NOT_CACHED","error":"Gateway Timeout","message":"only-if-cached: no stored answer"}')
})

/** The rate-limit plugin alone, one route of limit 1. */
async function limiter (builder: (request: unknown, context: RateLimitErrorContext) => object, handler?: boolean): Promise<FastifyInstance> {
  const a = Fastify({ logger: false })
  if (handler === true) a.setErrorHandler(async (err: FastifyError, _request, reply) => await reply.code(err.statusCode ?? 500).send({ handled: err.message }))
  await a.register(rateLimit, { errorResponseBuilder: builder })
  a.get('/r', { config: { rateLimit: { algorithm: 'token_bucket', limit: 1, window: 30_000 } } }, async () => 'ok')
  await a.ready()
  t.teardown(() => a.close())
  return a
}

t.test('errorResponseBuilder shapes the 429 body, as in @fastify/rate-limit', async (t) => {
  const contexts: RateLimitErrorContext[] = []
  const a = await limiter((_request, context) => {
    contexts.push(context)
    return { tooMany: true, after: context.after, max: context.max }
  })
  await a.inject('/r')
  const r = await a.inject('/r')
  t.equal(r.statusCode, 429, 'the status is 429 without the object saying so')
  t.same(r.json(), { tooMany: true, after: '30 s', max: 1 }, 'the object is the body')
  t.equal(r.headers['retry-after'], '30')
  t.ok(r.headers.ratelimit !== undefined)
  t.match(contexts, [{ statusCode: 429, ban: false, after: '30 s', max: 1, ttl: Number }])
  t.ok(contexts[0].ttl > 29_000 && contexts[0].ttl <= 30_000, 'ttl: ms until a retry')
})

t.test('an Error from errorResponseBuilder goes to the app\'s error handler', async (t) => {
  const a = await limiter((_request, context) => Object.assign(new Error(`slow down, ${context.after}`), { statusCode: 429 }), true)
  await a.inject('/r')
  const r = await a.inject('/r')
  t.equal(r.statusCode, 429)
  t.same(r.json(), { handled: 'slow down, 30 s' })
})
