// Errors go through Fastify (issue 17, part 3), the proxy's share: its 502, 503 and 504 (and its 400 and 500) are
// raised, not written by hand, so an app's setErrorHandler sees them (code FHG_ERR_*, statusCode) and may shape
// the answer; with no handler of the app's, the bytes on the wire are what the proxy wrote by hand before. The
// failover bookkeeping (retries, breaker, in-flight counts) is done before the error is raised.
import t from 'tap'
import Fastify, { LogController, type FastifyError, type FastifyInstance } from 'fastify'
import loadBalancer from '../plugins/load-balancer.js'
import { GatewayLogController } from '../index.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'
import { startGateway, get } from './helpers/gateway.js'

let live: UpstreamProcess
let slow: UpstreamProcess
// refused at once: privileged ports nothing listens on here (a freed ephemeral port could be taken by another
// process of a busy machine between the kill and the request)
const deadUrl = 'http://127.0.0.1:1'
const deadUrl2 = 'http://127.0.0.1:9'
t.before(async () => {
  live = await startUpstream({ id: 'peh-live' })
  slow = await startUpstream({ id: 'peh-slow' })
})
t.teardown(async () => { await Promise.all([live.kill(), slow.kill()]) })

interface Seen { code: string | undefined, statusCode: number | undefined, replyStatus: number }

/** The gateway of these tests; with `seen`, the app's error handler records each error and answers `{ shaped: code }` with its status. */
async function gatewayApp (seen?: Seen[]): Promise<{ app: FastifyInstance, url: string }> {
  const setup = (app: FastifyInstance): void => {
    if (seen !== undefined) {
      app.setErrorHandler(async (err: FastifyError, _request, reply) => {
        seen.push({ code: err.code, statusCode: err.statusCode, replyStatus: reply.statusCode })
        return await reply.code(err.statusCode ?? 500).header('x-shaped', '1').send({ shaped: err.code })
      })
    }
    // on this route the body is a value a parser made (it goes through reply-from, not the direct path), and the
    // reply-from call throws synchronously (the try never starts)
    app.addHook('preHandler', async (request, reply) => {
      if (!request.url.startsWith('/throws')) return
      ;(request as { body: unknown }).body = { parsed: true }
      ;(reply as unknown as { from: () => never }).from = () => { throw new Error('reply-from refused the request') }
    })
  }
  const gw = await startGateway({
    upstreams: {
      gone: { targets: [{ id: 'g', url: deadUrl }] },
      two: { targets: [{ id: 'd1', url: deadUrl }, { id: 'd2', url: deadUrl2 }] },
      none: { targets: [{ id: 'n', url: live.url }] },
      brk: { targets: [{ id: 'b', url: deadUrl }] },
      slow: { targets: [{ id: 's', url: slow.url }], timeouts: { headers: 200 } },
      ok: { targets: [{ id: 'o', url: live.url }] },
    },
    failover: { gone: { maxRetries: 0 }, two: { maxRetries: 1 }, brk: { maxRetries: 0 } },
    circuitBreaker: { brk: { consecutiveFailures: 1, openDuration: 60_000, halfOpenRequests: 1 } },
  }, [
    { prefix: '/gone', upstream: 'gone' }, { prefix: '/two', upstream: 'two' }, { prefix: '/none', upstream: 'none' },
    { prefix: '/brk', upstream: 'brk' }, { prefix: '/slow', upstream: 'slow' }, { prefix: '/throws', upstream: 'ok' },
    { prefix: '/unknown', upstream: 'nope' }, { prefix: '/ok', upstream: 'ok' },
  ], setup)
  t.teardown(() => gw.app.close())
  gw.app.loadBalancer.upstreams.get('none')!.pool.get('n')!.status = 'unhealthy'
  return gw
}

type Answer = Awaited<ReturnType<typeof get>>
/** Headers as the client got them, without the ones that change per run. */
function headersOf (a: Answer): Array<[string, unknown]> {
  return Object.entries(a.headers).filter(([k]) => k !== 'date')
}
function jsonHeaders (text: string): Array<[string, unknown]> {
  return [['content-type', 'application/json; charset=utf-8'], ['content-length', String(Buffer.byteLength(text))], ['connection', 'keep-alive'], ['keep-alive', 'timeout=72']]
}

t.test('with no error handler of the app, the proxy answers with the bytes it wrote by hand before', async (t) => {
  const { app, url } = await gatewayApp()
  const expect = async (path: string, status: number, text: string): Promise<void> => {
    const a = await get(`${url}${path}`)
    t.equal(a.status, status, path)
    t.equal(a.text, text, `${path}: the body, byte for byte`)
    t.same(headersOf(a), jsonHeaders(text), `${path}: the headers, in order`)
  }
  await expect('/gone/x', 502, '{"statusCode":502,"code":"FHG_ERR_UPSTREAM_CONNECT","error":"Bad Gateway","message":"Could not connect to upstream \\"gone\\""}')
  await expect('/two/x', 502, '{"statusCode":502,"code":"FHG_ERR_UPSTREAM_CONNECT","error":"Bad Gateway","message":"Could not connect to upstream \\"two\\""}')
  await expect('/none/x', 503, '{"statusCode":503,"code":"FHG_ERR_NO_HEALTHY_TARGET","error":"Service Unavailable","message":"No healthy target in upstream \\"none\\""}')
  await expect('/brk/x', 502, '{"statusCode":502,"code":"FHG_ERR_UPSTREAM_CONNECT","error":"Bad Gateway","message":"Could not connect to upstream \\"brk\\""}')
  await expect('/brk/x', 503, '{"statusCode":503,"code":"FHG_ERR_CIRCUIT_OPEN","error":"Service Unavailable","message":"Every target of upstream \\"brk\\" has an open circuit"}')
  await expect('/slow/slow/3000', 504, '{"statusCode":504,"code":"FHG_ERR_UPSTREAM_TIMEOUT","error":"Gateway Timeout","message":"Upstream \\"slow\\" timed out"}')
  await expect('/throws/x', 400, '{"statusCode":400,"code":"FHG_ERR_BAD_REQUEST","error":"Bad Request","message":"reply-from refused the request"}')
  await expect('/unknown/x', 500, '{"statusCode":500,"code":"FHG_ERR_UNKNOWN_UPSTREAM","error":"Internal Server Error","message":"Route names unknown upstream \\"nope\\""}')
  const status = app.loadBalancer.status()
  for (const u of ['gone', 'two', 'brk', 'slow', 'ok'] as const) for (const target of status[u].targets) t.equal(target.inFlight, 0, `${u}/${target.id}: in-flight released`)
})

t.test("an app's setErrorHandler sees the proxy's errors (code, statusCode) and shapes the answer", async (t) => {
  const seen: Seen[] = []
  const { app, url } = await gatewayApp(seen)
  const expect = async (path: string, status: number, code: string): Promise<void> => {
    const a = await get(`${url}${path}`)
    t.equal(a.status, status, path)
    t.same(a.body, { shaped: code }, `${path}: the body is the app's`)
    t.equal(a.headers['x-shaped'], '1')
    t.same(seen.at(-1), { code, statusCode: status, replyStatus: status }, `${path}: the handler saw the error, the status already set`)
  }
  await expect('/gone/x', 502, 'FHG_ERR_UPSTREAM_CONNECT')
  await expect('/two/x', 502, 'FHG_ERR_UPSTREAM_CONNECT') // the last try's failure: both targets refused
  await expect('/none/x', 503, 'FHG_ERR_NO_HEALTHY_TARGET')
  await expect('/brk/x', 502, 'FHG_ERR_UPSTREAM_CONNECT')
  await expect('/brk/x', 503, 'FHG_ERR_CIRCUIT_OPEN')
  await expect('/slow/slow/3000', 504, 'FHG_ERR_UPSTREAM_TIMEOUT')
  await expect('/throws/x', 400, 'FHG_ERR_BAD_REQUEST')
  await expect('/unknown/x', 500, 'FHG_ERR_UNKNOWN_UPSTREAM')
  t.equal(seen.length, 8, 'one call per error')

  // the bookkeeping was done before the error was raised: retry counted, breaker opened, in-flight released
  const metrics = (await get(`${url}/metrics`)).text
  t.match(metrics, /retries_total\{upstream="two",reason="connect"\} 1/, 'the retry of /two is counted')
  const status = app.loadBalancer.status()
  t.equal(status.brk.targets[0].circuit, 'open', 'the failure opened the breaker')
  for (const u of ['gone', 'two', 'brk', 'slow', 'ok'] as const) for (const target of status[u].targets) t.equal(target.inFlight, 0, `${u}/${target.id}: in-flight released`)

  // a proxied answer does not go near the error handler
  const ok = await get(`${url}/ok/x`)
  t.equal(ok.status, 200)
  t.equal(seen.length, 8)
})

t.test("Fastify's default handler logs an upstream fault at warn without a stack (GatewayLogController); other 5xx as before", async (t) => {
  async function logOf (controller: LogController): Promise<Array<{ level: number, msg: string, code?: string, err?: { stack?: string } }>> {
    const lines: Array<{ level: number, msg: string }> = []
    const app = Fastify({ logger: { level: 'info', stream: { write: (l: string) => { lines.push(JSON.parse(l)) } } }, logController: controller })
    t.teardown(() => app.close())
    await app.register(loadBalancer, { upstreams: { gone: { targets: [{ id: 'g', url: deadUrl }] } }, failover: { gone: { maxRetries: 0 } } })
    app.get('/gone', { config: { upstream: 'gone' } }, (_req, reply) => reply.proxy())
    app.get('/bug', async () => { throw new Error('a bug') })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
    t.equal((await get(`${base}/gone`)).status, 502)
    t.equal((await get(`${base}/bug`)).status, 500)
    // the default error handler's lines (Fastify's request lines and the failover notifier's are not the point)
    return lines.filter((l) => 'res' in l && l.msg !== 'request completed')
  }
  const ours = await logOf(new GatewayLogController())
  t.match(ours, [{ level: 40, msg: 'Could not connect to upstream "gone"', code: 'FHG_ERR_UPSTREAM_CONNECT' }, { level: 50, msg: 'a bug', err: { stack: /Error: a bug/ } }])
  t.equal(ours[0].err, undefined, 'no error object, no stack, for the upstream fault')
  const fastifys = await logOf(new LogController())
  t.match(fastifys, [{ level: 50, msg: 'Could not connect to upstream "gone"' }, { level: 50, msg: 'a bug' }], "Fastify's own controller: both are errors")
})
