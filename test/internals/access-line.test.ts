// lib/log/access-line.ts alone: every line is one valid JSON object whatever the request carries; the texts it
// quotes once (method, time, route/upstream/target per plan and target, the socket's IP) never leak between
// requests they do not belong to.
import t from 'tap'
import { accessLine, jsonString, type AccessRequest } from '../../lib/log/access-line.js'
import { kProxy } from '../../lib/proxy/engine.js'
import { kMatchedRoute, NO_ROUTE } from '../../lib/routes/route-config.js'

interface Sock { bytesRead: number, bytesWritten: number | undefined }
function request (o: { url?: string, method?: string, id?: string, ip?: string, headers?: Record<string, string>, socket?: Sock | null, run?: unknown, matched?: unknown, routeUrl?: string } = {}): AccessRequest {
  const r: Record<string | symbol, unknown> = {
    id: o.id ?? 'req-1',
    method: o.method ?? 'GET',
    url: o.url ?? '/api/x',
    ip: o.ip ?? '127.0.0.1',
    headers: o.headers ?? {},
    raw: { socket: o.socket === undefined ? { bytesRead: 100, bytesWritten: 300 } : o.socket },
    routeOptions: { url: o.routeUrl },
  }
  if (o.run !== undefined) r[kProxy] = o.run
  if (o.matched !== undefined) r[kMatchedRoute] = o.matched
  return r as unknown as AccessRequest
}
const reply = (statusCode = 200, elapsedTime = 1.2345): { statusCode: number, elapsedTime: number } => ({ statusCode, elapsedTime })
const parse = (line: string): Record<string, unknown> => {
  if (!line.endsWith('\n') || line.indexOf('\n') !== line.length - 1) throw new Error(`not one line: ${JSON.stringify(line)}`)
  return JSON.parse(line) as Record<string, unknown>
}
const run = (plan: { label: string }, upstreamName: string, targetId: string | undefined, tryCount = 1): unknown => ({ plan, upstreamName, targetId, tryCount })

t.test('jsonString: plain text quoted as is; anything JSON must escape goes through JSON.stringify', async (t) => {
  for (const s of ['/a/b?c=1&d=%22', '', 'req-42', '::ffff:127.0.0.1']) t.equal(jsonString(s), JSON.stringify(s), s)
  for (const s of ['/a"b', '/a\\b', '/a\nb', '/\u0000', '/\u007f', '/é', '/\u2028', '/\ud800']) t.equal(jsonString(s), JSON.stringify(s), escape(s))
  t.equal(jsonString(undefined), 'null')
  t.equal(jsonString(null), 'null')
})

t.test('a proxied request: every field, and valid JSON whatever the path, id and method hold', async (t) => {
  const plan = { label: '/api' }
  const line = parse(accessLine(request({ run: run(plan, 'api', 'a-1', 2), url: '/api/"q"\\\n\u00e9?x=\u2028', id: 'id "1"' }), reply(502, 12.3456), 1_764_000_000_123))
  t.same(line, {
    level: 30, time: 1_764_000_000_123, msg: 'access', reqId: 'id "1"', method: 'GET', path: '/api/"q"\\\n\u00e9?x=\u2028',
    status: 502, route: '/api', upstream: 'api', target: 'a-1', tries: 2, ms: 12.35, bytesIn: 100, bytesOut: 300, ip: '127.0.0.1',
  })
})

t.test('ms as hundredths: whole, small, rounding, and what is not a duration', async (t) => {
  const ms = (v: number): unknown => parse(accessLine(request(), reply(200, v), 1)).ms
  t.equal(ms(7), 7)
  t.equal(ms(0), 0)
  t.equal(ms(0.004), 0)
  t.equal(ms(0.005), 0.01)
  t.equal(ms(1.999), 2)
  t.equal(ms(10.05), 10.05)
  t.equal(ms(123456.789), 123456.79)
  t.equal(ms(Number.NaN), null)
  t.equal(ms(Infinity), null)
  t.equal(ms(-1), -1)
})

t.test('route/upstream/target are quoted once per plan and target, and follow the try that answered', async (t) => {
  const plan = { label: '/api' }
  const a = parse(accessLine(request({ run: run(plan, 'api', 'a-1') }), reply(), 1))
  const b = parse(accessLine(request({ run: run(plan, 'api', 'a-2') }), reply(), 1))
  // the same target id in the fallback pool: the upstream is that pool's, not the cached one
  const c = parse(accessLine(request({ run: run(plan, 'api-fallback', 'a-1') }), reply(), 1))
  const d = parse(accessLine(request({ run: run(plan, 'api', 'a-1') }), reply(), 1))
  const e = parse(accessLine(request({ run: run(plan, 'api', undefined, 0) }), reply(503), 1))
  t.same([a, b, c, d, e].map((l) => [l.route, l.upstream, l.target, l.tries]),
    [['/api', 'api', 'a-1', 1], ['/api', 'api', 'a-2', 1], ['/api', 'api-fallback', 'a-1', 1], ['/api', 'api', 'a-1', 1], ['/api', 'api', null, 0]])
  const other = parse(accessLine(request({ run: run({ label: 'GET /v2 "odd"' }, 'api', 'a-1') }), reply(), 1))
  t.equal(other.route, 'GET /v2 "odd"', 'another plan, its own label')
})

t.test('not proxied: the matched gateway route, the declared route, or none', async (t) => {
  const g = parse(accessLine(request({ matched: { gatewayRoute: '/api', upstream: 'api' } }), reply(429), 1))
  t.same([g.route, g.upstream, g.target, g.tries], ['/api', 'api', null, 0])
  const declared = parse(accessLine(request({ matched: null, routeUrl: '/static/*' }), reply(200), 1))
  t.same([declared.route, declared.upstream], ['/static/*', null])
  const none = parse(accessLine(request({ matched: NO_ROUTE, routeUrl: '/*' }), reply(404), 1))
  t.same([none.route, none.upstream], [null, null])
})

t.test('time and method: the same texts for the same values, a new one when they change', async (t) => {
  t.equal(parse(accessLine(request(), reply(), 1000)).time, 1000)
  t.equal(parse(accessLine(request(), reply(), 1000)).time, 1000)
  t.equal(parse(accessLine(request(), reply(), 1001)).time, 1001)
  t.equal(parse(accessLine(request({ method: 'PROPFIND' }), reply(), 1)).method, 'PROPFIND')
  t.equal(parse(accessLine(request({ method: 'GET' }), reply(), 1)).method, 'GET')
})

t.test('bytes: per exchange on a kept-alive socket; null once the socket is gone', async (t) => {
  const socket: Sock = { bytesRead: 100, bytesWritten: 300 }
  const one = parse(accessLine(request({ socket }), reply(), 1))
  socket.bytesRead = 180
  socket.bytesWritten = 700
  const two = parse(accessLine(request({ socket }), reply(), 1))
  t.same([one.bytesIn, one.bytesOut, two.bytesIn, two.bytesOut], [100, 300, 80, 400])
  const gone = parse(accessLine(request({ socket: { bytesRead: 5, bytesWritten: undefined } }), reply(), 1))
  t.same([gone.bytesIn, gone.bytesOut], [null, null])
  const none = parse(accessLine(request({ socket: null, ip: '10.0.0.9' }), reply(), 1))
  t.same([none.bytesIn, none.bytesOut, none.ip], [null, null, '10.0.0.9'])
})

t.test('ip: the socket peer is quoted once a connection; X-Forwarded-For is read on every request', async (t) => {
  const socket: Sock = { bytesRead: 0, bytesWritten: 0 }
  t.equal(parse(accessLine(request({ socket, ip: '127.0.0.1' }), reply(), 1)).ip, '127.0.0.1')
  // trustProxy: request.ip follows the header, request by request, on the same connection
  t.equal(parse(accessLine(request({ socket, ip: '203.0.113.7', headers: { 'x-forwarded-for': '203.0.113.7' } }), reply(), 1)).ip, '203.0.113.7')
  t.equal(parse(accessLine(request({ socket, ip: '198.51.100."1', headers: { 'x-forwarded-for': 'x' } }), reply(), 1)).ip, '198.51.100."1')
  t.equal(parse(accessLine(request({ socket, ip: '127.0.0.1' }), reply(), 1)).ip, '127.0.0.1', 'without the header: the peer again')
  t.equal(parse(accessLine(request({ ip: '::1' }), reply(), 1)).ip, '::1', 'another connection: its own peer')
})
