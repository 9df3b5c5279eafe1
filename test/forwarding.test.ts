// Issue 11 point 3: forwarding headers are the gateway's, not the client's. node.trustProxy (default false)
// decides whose X-Forwarded-*, Forwarded and X-Real-IP pass; the rate limiter reads the client IP the same way.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { rawRequest } from './helpers/raw-http.js'

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(1, 'fwd') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

async function listen (extra: Partial<GatewayConfigInput>): Promise<{ app: FastifyInstance, port: number }> {
  const app = Fastify({ logger: false })
  await app.register(gateway, {
    node: { id: 'gw-fwd', port: 0, ...extra.node },
    upstreams: { site: { targets: [{ id: 'site-1', url: ups[0].url }] } },
    routes: [
      { path: '/page', upstream: 'site', cache: { ttl: '1m' } },
      { path: '/limited', upstream: 'site', rateLimit: { algorithm: 'fixed_window', limit: 1, window: '1m' } },
    ],
    ...(extra.rateLimit !== undefined ? { rateLimit: extra.rateLimit } : {}),
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as { port: number }).port }
}

const FORGED = [
  'x-forwarded-for: 6.6.6.6',
  'x-forwarded-host: attacker.example',
  'x-forwarded-proto: https',
  'x-forwarded-port: 1',
  'forwarded: for=6.6.6.6;host=attacker.example;proto=https',
  'x-real-ip: 6.6.6.6',
].join('\r\n')

t.test('an untrusted client\'s forwarding headers are replaced by the gateway\'s own', async (t) => {
  const { app, port } = await listen({})
  t.teardown(() => app.close())
  const r = await rawRequest(port, `GET /page/fresh HTTP/1.1\r\nhost: shop.test\r\n${FORGED}`)
  t.equal(r.status, 200)
  const h = r.json.headers as Record<string, string>
  t.equal(h['x-forwarded-for'], '127.0.0.1', 'X-Forwarded-For starts fresh from the socket address')
  t.equal(h['x-real-ip'], '127.0.0.1', 'X-Real-IP is the socket address')
  t.equal(h['x-forwarded-host'], 'shop.test', 'X-Forwarded-Host is the Host the gateway was asked for')
  t.equal(h['x-forwarded-proto'], 'http', 'X-Forwarded-Proto is the gateway\'s')
  t.equal(h['x-forwarded-port'], String(port), 'X-Forwarded-Port is the gateway\'s')
  t.notOk('forwarded' in h, 'Forwarded is dropped')
})

t.test('cache poisoning: an attacker\'s X-Forwarded-Host never reaches the upstream, nor the next client', async (t) => {
  const { app, port } = await listen({})
  t.teardown(() => app.close())
  // the upstream echoes the request headers (X-Forwarded-Host among them) into its body; the route is cached
  const attack = await rawRequest(port, 'GET /page/home HTTP/1.1\r\nhost: shop.test\r\nx-forwarded-host: attacker.example')
  t.equal(attack.headers['x-cache'], 'MISS', 'the attacker\'s request is stored')
  t.notMatch(attack.body, /attacker\.example/, 'the attacker\'s host did not reach the upstream')
  const victim = await rawRequest(port, 'GET /page/home HTTP/1.1\r\nhost: shop.test')
  t.equal(victim.headers['x-cache'], 'HIT', 'the next client gets the stored page')
  t.notMatch(victim.body, /attacker\.example/, 'the stored page holds no attacker host')
  t.equal(victim.json.headers['x-forwarded-host'], 'shop.test')
})

t.test('a trusted peer\'s forwarding headers pass, X-Forwarded-For is appended to, and the limiter reads it', async (t) => {
  const { app, port } = await listen({ node: { trustProxy: '127.0.0.1' } as GatewayConfigInput['node'] })
  t.teardown(() => app.close())
  const r = await rawRequest(port, `GET /page/trusted HTTP/1.1\r\nhost: shop.test\r\n${FORGED}`)
  const h = r.json.headers as Record<string, string>
  t.equal(h['x-forwarded-for'], '6.6.6.6, 127.0.0.1', 'the peer is appended')
  t.equal(h['x-forwarded-host'], 'attacker.example', 'the trusted proxy\'s X-Forwarded-Host stands')
  t.equal(h['x-forwarded-proto'], 'https')
  t.equal(h['x-forwarded-port'], '1')
  t.equal(h['x-real-ip'], '6.6.6.6')
  t.match(h.forwarded, /for=6\.6\.6\.6/)
  // the limiter keys on the forwarded client: two clients behind the trusted proxy get a budget each
  t.equal((await rawRequest(port, 'GET /limited/a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1.1.1.1')).status, 200)
  t.equal((await rawRequest(port, 'GET /limited/a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1.1.1.1')).status, 429)
  t.equal((await rawRequest(port, 'GET /limited/a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 2.2.2.2')).status, 200, 'another forwarded client, its own budget')
})

t.test('untrusted: a forged X-Forwarded-For opens no budget; rateLimit.trustProxy, when set, wins for the limiter', async (t) => {
  const plain = await listen({})
  t.teardown(() => plain.app.close())
  t.equal((await rawRequest(plain.port, 'GET /limited/a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1.1.1.1')).status, 200)
  t.equal((await rawRequest(plain.port, 'GET /limited/a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 2.2.2.2')).status, 429, 'one budget: the socket address')

  const split = await listen({ node: { trustProxy: true } as GatewayConfigInput['node'], rateLimit: { trustProxy: false } })
  t.teardown(() => split.app.close())
  t.equal((await rawRequest(split.port, 'GET /limited/a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 1.1.1.1')).status, 200)
  t.equal((await rawRequest(split.port, 'GET /limited/a HTTP/1.1\r\nhost: x\r\nx-forwarded-for: 2.2.2.2')).status, 429, 'rateLimit.trustProxy: false wins')
})
