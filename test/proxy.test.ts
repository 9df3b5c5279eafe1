import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { request } from 'undici'
import { startUpstream, startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { startGateway, get, client, rawGet } from './helpers/gateway.js'

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(2, 'p') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

t.test('forwards method, path, query, status and end-to-end headers as received', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: ups[0].url }] } } }, [{ prefix: '/api', upstream: 'u' }])
  t.teardown(() => app.close())
  const res = await get(`${url}/api/items/%7Eid?b=2&a=1&a=3&empty=&enc=%20x`, {
    method: 'DELETE', headers: { 'x-custom': 'kept', 'x-forwarded-for': '10.9.9.9' },
  })
  t.equal(res.status, 200)
  t.equal(res.body.method, 'DELETE')
  t.equal(res.body.url, '/api/items/%7Eid?b=2&a=1&a=3&empty=&enc=%20x', 'path and query byte-exact')
  t.equal(res.body.headers['x-custom'], 'kept')
  // issue 11 point 3: an untrusted client's X-Forwarded-For is not appended to (trustProxy is off here)
  t.equal(res.body.headers['x-forwarded-for'], '127.0.0.1', 'an untrusted client\'s X-Forwarded-For starts fresh from the socket')
  t.equal(res.body.headers['x-forwarded-proto'], 'http')
  t.match(res.body.headers['x-forwarded-host'], /^127\.0\.0\.1:\d+$/)
  t.equal(res.headers['x-custom-response'], 'yes', 'response headers kept')
  const s = await get(`${url}/api/status/418`)
  t.equal(s.status, 418, 'upstream status code passes through')
  const p = await get(`${url}/api/x`, { method: 'PATCH', body: 'abc', headers: { 'content-type': 'text/plain' } })
  t.equal(p.body.method, 'PATCH')
  t.equal(p.body.bodyBytes, 3)
  const h = await request(`${url}/api/x`, { method: 'HEAD', dispatcher: client })
  await h.body.dump()
  t.equal(h.statusCode, 200)
})

t.test('drops hop-by-hop headers and those named in Connection, both ways', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: ups[0].url }] } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  // node:http sends a custom Connection header as given (undici's client would not).
  const res = await rawGet(`${url}/echo`, { connection: 'keep-alive, x-drop-me', 'x-drop-me': '1', 'proxy-authorization': 'Basic eA==', te: 'trailers', 'x-keep': '1' })
  t.equal(res.body.headers['x-drop-me'], undefined, 'Connection-listed request header dropped')
  t.equal(res.body.headers['proxy-authorization'], undefined)
  t.equal(res.body.headers.te, undefined)
  t.equal(res.body.headers['x-keep'], '1')
  const hop = await get(`${url}/hop`)
  t.equal(hop.text, 'hop')
  t.equal(hop.headers['x-secret-hop'], undefined, 'Connection-listed response header dropped')
  t.equal(hop.headers['proxy-authenticate'], undefined)
  t.equal(hop.headers['x-end-to-end'], 'kept')
})

t.test('streams a 10 MB request body and a 10 MB response body', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: ups[0].url }] } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const size = 10 * 1024 * 1024
  const payload = randomBytes(size)
  const sha = createHash('sha256').update(payload).digest('hex')
  // A chunked stream (no content-length), so nothing can buffer it as one piece on the way.
  const body = Readable.from((function * () { for (let i = 0; i < size; i += 256 * 1024) yield payload.subarray(i, i + 256 * 1024) })())
  const up = await get(`${url}/upload`, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(up.status, 200)
  t.equal(up.body.bodyBytes, size)
  t.equal(up.body.bodySha256, sha)
  const down = await request(`${url}/big/${size}`, { dispatcher: client })
  let n = 0
  for await (const chunk of down.body) n += (chunk as Buffer).length
  t.equal(n, size)
})

t.test('answers 502 on connect failure, 503 with no eligible target, 504 on timeout', async (t) => {
  const dead = await startUpstream({ id: 'dead' })
  await dead.kill()
  const { app, url } = await startGateway({
    upstreams: {
      gone: { targets: [{ id: 'g', url: dead.url }] },
      none: { targets: [{ id: 'n', url: ups[0].url }] },
      slow: { targets: [{ id: 's', url: ups[1].url }], timeouts: { headers: 200 } },
    },
  }, [{ prefix: '/gone', upstream: 'gone' }, { prefix: '/none', upstream: 'none' }, { prefix: '/slow', upstream: 'slow' }])
  t.teardown(() => app.close())
  app.loadBalancer.upstreams.get('none')!.pool.get('n')!.status = 'unhealthy'

  const a = await get(`${url}/gone/x`)
  t.equal(a.status, 502)
  t.equal(a.body.code, 'FHG_ERR_UPSTREAM_CONNECT')
  t.match(a.headers['content-type'], /application\/json/)
  const b = await get(`${url}/none/x`)
  t.equal(b.status, 503)
  t.equal(b.body.code, 'FHG_ERR_NO_HEALTHY_TARGET')
  const c = await get(`${url}/slow/slow/3000`)
  t.equal(c.status, 504)
  t.equal(c.body.code, 'FHG_ERR_UPSTREAM_TIMEOUT')
  const targetState = app.loadBalancer.status()
  t.equal(targetState.gone.targets[0].inFlight, 0, 'in-flight released after failure')
  t.equal(targetState.slow.targets[0].inFlight, 0, 'in-flight released after timeout')
})

t.test('routes declared before the plugin work, and route config picks upstream and strategy', async (t) => {
  const Fastify = (await import('fastify')).default
  const loadBalancer = (await import('../plugins/load-balancer.js')).default
  const app = Fastify()
  app.get('/early/*', { config: { upstream: 'u', strategy: 'round_robin' } }, (_req, reply) => reply.proxy())
  await app.register(loadBalancer, { upstreams: { u: { strategy: 'random', targets: [{ id: 'a', url: ups[0].url }, { id: 'b', url: ups[1].url }] } } })
  app.get('/late/*', { config: { upstream: 'u' } }, (_req, reply) => reply.proxy({ upstream: 'u', strategy: 'round_robin' }))
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const seen: string[] = []
  for (let i = 0; i < 4; i++) seen.push((await get(`${base}/early/x`)).body.id)
  t.same(seen, ['p-1', 'p-2', 'p-1', 'p-2'], 'route strategy override (round_robin) is used')
  const late = await get(`${base}/late/y`)
  t.equal(late.status, 200)
})

t.test('targets change at run time without dropping requests in flight', async (t) => {
  const third = await startUpstream({ id: 'p-3' })
  t.teardown(() => third.kill())
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: ups[0].url }, { id: 'b', url: ups[1].url }] } } }, [{ prefix: '/', upstream: 'u' }])
  t.teardown(() => app.close())
  const lb = app.loadBalancer
  // Slow requests in flight on both targets while we remove one.
  const inflight = Array.from({ length: 10 }, async () => await get(`${url}/slow/300`))
  await new Promise((r) => setTimeout(r, 100))
  lb.removeTarget('u', 'a')
  lb.addTarget('u', { id: 'c', url: third.url, weight: 2 })
  lb.setWeight('u', 'b', 3)
  const done = await Promise.all(inflight)
  t.ok(done.every((r) => r.status === 200), 'every request in flight during the change succeeded')
  const after = new Set<string>()
  for (let i = 0; i < 10; i++) after.add((await get(`${url}/x`)).body.id)
  t.same([...after].sort(), ['p-2', 'p-3'], 'removed target gets no traffic, added target does')
  t.equal(lb.upstreams.get('u')!.pool.get('b')!.weight, 3)
})

t.test('metrics count requests by route, upstream and status class', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: ups[0].url }] } } }, [{ prefix: '/m', upstream: 'u' }])
  t.teardown(() => app.close())
  await get(`${url}/m/ok`)
  await get(`${url}/m/status/503`)
  const text = (await get(`${url}/metrics`)).text
  t.match(text, /proxy_requests_total\{route="\/m\/\*",upstream="u",status_class="2xx"\} 1/)
  t.match(text, /proxy_requests_total\{route="\/m\/\*",upstream="u",status_class="5xx"\} 1/)
  t.match(text, /proxy_request_duration_seconds_count\{route="\/m\/\*",upstream="u"\} 2/)
  t.match(text, /upstream_target_selections_total\{upstream="u",target="a"\} 2/)
  t.match(text, /upstream_target_in_flight\{upstream="u",target="a"\} 0/)
})

t.test('a body an app\'s parser made a value of goes through reply-from (serialised again); other bodies and none take the direct path', async (t) => {
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: ups[0].url }] } } }, [{ prefix: '/raw', upstream: 'u' }], (app) => {
    // outside the gateway's scope: Fastify's own JSON parser runs, the handler proxies the parsed object
    app.post('/parsed', { config: { upstream: 'u' } }, (_req, reply) => { reply.proxy() })
  })
  t.teardown(() => app.close())
  const json = '{ "a" : 1,  "b": [1, 2] }'
  const p = await get(`${url}/parsed`, { method: 'POST', body: json, headers: { 'content-type': 'application/json' } })
  t.equal(p.status, 200)
  const again = '{"a":1,"b":[1,2]}'
  t.equal(p.body.bodyBytes, again.length, 'the object serialised again by reply-from')
  t.equal(p.body.bodySha256, createHash('sha256').update(again).digest('hex'))
  t.equal(p.body.headers['content-length'], String(again.length), 'its own length')
  t.equal(p.body.headers['x-forwarded-for'], '127.0.0.1', 'the forwarding headers on this path too')
  const r = await get(`${url}/raw/x`, { method: 'POST', body: json, headers: { 'content-type': 'application/json' } })
  t.equal(r.body.bodySha256, createHash('sha256').update(json).digest('hex'), 'a passed-through body goes byte for byte')
  t.equal(r.body.headers['content-length'], String(json.length))
})
