// upstreams.<name>.http2: true against a real HTTP/2-only upstream (node:http2 with a certificate of a CA made in
// the test): requests and bodies go over HTTP/2 (offered by ALPN); without the key the same upstream is
// unreachable (it takes no HTTP/1.1); an http:// target with the key is spoken to in HTTP/1.1 (no h2c).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import Fastify from 'fastify'
import { request } from 'undici'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import { issue, makeCa } from './helpers/pki.js'
import { client } from './helpers/gateway.js'

/** What the upstreams answer: the protocol they were spoken to in, and the body they got. */
function answer (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void {
  const hash = createHash('sha256')
  let bytes = 0
  req.on('data', (c: Buffer) => { bytes += c.length; hash.update(c) })
  req.on('end', () => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ httpVersion: req.httpVersion, method: req.method, url: req.url, bytes, sha256: hash.digest('hex') }))
  })
}

t.test('http2: true speaks HTTP/2 to an https target (ALPN); an http:// target stays on HTTP/1.1', async (t) => {
  const pki = makeCa()
  const cert = issue(pki, 'h2-upstream', 'localhost', true)
  const h2 = http2.createSecureServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key), allowHTTP1: false }, answer)
  h2.listen(0, '127.0.0.1')
  await once(h2, 'listening')
  const sessions = new Set<http2.ServerHttp2Session>()
  h2.on('session', (s) => { sessions.add(s); s.on('close', () => sessions.delete(s)) })
  t.teardown(() => { for (const s of sessions) s.destroy(); h2.close() })
  const h1 = http.createServer(answer)
  h1.listen(0, '127.0.0.1')
  await once(h1, 'listening')
  t.teardown(() => { h1.closeAllConnections(); h1.close() })
  const h2Port = (h2.address() as { port: number }).port
  const h1Port = (h1.address() as { port: number }).port

  const config: GatewayConfigInput = {
    node: { id: 'gw-upstream-h2', port: 0 },
    upstreams: {
      // one origin per upstream: undici keeps one pool per origin, made with its upstream's TLS and HTTP/2 keys
      h2: { targets: [{ id: 'a', url: `https://127.0.0.1:${h2Port}` }], tls: { ca: pki.ca }, http2: true },
      h1only: { targets: [{ id: 'b', url: `https://localhost:${h2Port}` }], tls: { ca: pki.ca }, failover: { maxRetries: 0 } },
      plain: { targets: [{ id: 'c', url: `http://127.0.0.1:${h1Port}` }], http2: true },
    },
    routes: [
      { path: '/h2', upstream: 'h2' },
      { path: '/h1only', upstream: 'h1only' },
      { path: '/plain', upstream: 'plain' },
    ],
  }
  const app = Fastify({ logger: false })
  await app.register(gateway, config)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

  const get = await request(`${url}/h2/get?x=1`, { dispatcher: client })
  t.equal(get.statusCode, 200)
  const g = await get.body.json() as { httpVersion: string, url: string }
  t.equal(g.httpVersion, '2.0', 'the upstream was spoken to in HTTP/2')
  t.equal(g.url, '/h2/get?x=1')

  const body = randomBytes(2 * 1024 * 1024)
  const post = await request(`${url}/h2/upload`, { dispatcher: client, method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } })
  t.equal(post.statusCode, 200)
  const p = await post.body.json() as { httpVersion: string, bytes: number, sha256: string }
  t.equal(p.httpVersion, '2.0')
  t.equal(p.bytes, body.length)
  t.equal(p.sha256, createHash('sha256').update(body).digest('hex'), 'a 2 MB upload arrives byte-identical over HTTP/2')

  // several requests at once share the HTTP/2 session
  const many = await Promise.all(Array.from({ length: 10 }, async (_, i) => {
    const r = await request(`${url}/h2/many/${i}`, { dispatcher: client })
    return ((await r.body.json()) as { httpVersion: string }).httpVersion
  }))
  t.same(many, Array(10).fill('2.0'))

  const refused = await request(`${url}/h1only/x`, { dispatcher: client })
  t.equal(refused.statusCode, 502, 'without http2 the HTTP/2-only target is unreachable: the key is what made the difference')
  await refused.body.dump()

  const plain = await request(`${url}/plain/x`, { dispatcher: client })
  t.equal(plain.statusCode, 200)
  t.equal(((await plain.body.json()) as { httpVersion: string }).httpVersion, '1.1', 'http:// target: HTTP/1.1 (no h2c)')
})
