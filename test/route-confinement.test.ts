// Issue 11 point 1: a request never leaves its route. Raw TCP requests (curl and undici normalise paths)
// against a gateway whose routes are configured: every path shape a URL parser would change is refused
// with 400 FHG_ERR_BAD_PATH before routing, so neither a `methods` filter nor a rate limit can be bypassed.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import { badPathReason } from '../lib/routes/path-guard.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { rawRequest } from './helpers/raw-http.js'

let ups: UpstreamProcess[]
let app: FastifyInstance
let port: number
t.before(async () => {
  ups = await startUpstreams(3, 'conf')
  const config: GatewayConfigInput = {
    node: { id: 'gw-conf', port: 0 },
    upstreams: {
      pub: { targets: [{ id: 'pub-1', url: ups[0].url }] },
      ro: { targets: [{ id: 'ro-1', url: ups[1].url }] },
      lim: { targets: [{ id: 'lim-1', url: ups[2].url }] },
    },
    routes: [
      { path: '/public', upstream: 'pub' },
      { path: '/ro', upstream: 'ro', methods: ['GET'] },
      { path: '/limited', upstream: 'lim', rateLimit: { algorithm: 'fixed_window', limit: 1, window: '1m' } },
    ],
  }
  app = Fastify({ logger: false })
  await app.register(gateway, config)
  await app.listen({ host: '127.0.0.1', port: 0 })
  port = (app.server.address() as { port: number }).port
})
t.teardown(async () => {
  await app?.close()
  await Promise.all(ups.map(async (u) => await u.kill()))
})

const req = async (method: string, path: string) => await rawRequest(port, `${method} ${path} HTTP/1.1\r\nhost: gw.test`)

// each shape climbs out of /public/x into a sibling route
const ESCAPES = [
  '\\..\\..\\', // raw backslashes
  '%5c..%5c..%5c', '%5C..%5C..%5C', // encoded backslashes
  '/%2e%2e/%2e%2e/', '/%2E%2E/%2e./', '/.%2e/%2E./', // encoded dot segments
  '/../../', // raw dot segments
  '%2f..%2f..%2f', '%2F..%2F..%2F', // encoded slashes
  '\\%2e%2e/..%5c', // mixed
]

t.test('every escape shape is refused with 400 FHG_ERR_BAD_PATH, and reaches no upstream', async (t) => {
  // the limit of /limited is spent first: a bypass would answer 200 where /limited answers 429
  t.equal((await req('GET', '/limited/z')).status, 200)
  t.equal((await req('GET', '/limited/z')).status, 429, 'the limit of /limited is spent')
  t.equal((await req('DELETE', '/ro/item')).status, 404, 'the methods filter of /ro refuses DELETE')
  const before = await Promise.all(ups.map(async (u) => (await u.stats()).requests))
  for (const esc of ESCAPES) {
    for (const [method, path] of [['GET', `/public/x${esc}limited/z`], ['DELETE', `/public/x${esc}ro/item`], ['GET', `/public/x${esc}public/y`]] as const) {
      const r = await req(method, path)
      t.equal(r.status, 400, `${method} ${path}: 400`)
      t.equal(r.json?.code, 'FHG_ERR_BAD_PATH', `${method} ${path}: FHG_ERR_BAD_PATH`)
    }
  }
  for (const path of ['/public/.', '/public/..', '/public/%2e', '/public/x/..', '/public/x/./y', '/limited/%2e%2e', '//127.0.0.1:1/x', '/public/x#/../../limited/z']) {
    const r = await req('GET', path)
    t.equal(r.json?.code, 'FHG_ERR_BAD_PATH', `GET ${path}: refused`)
  }
  const after = await Promise.all(ups.map(async (u) => (await u.stats()).requests))
  t.same(after, before, 'no refused request reached any upstream')
})

t.test('ordinary paths pass and reach the upstream byte for byte', async (t) => {
  for (const path of [
    '/public/a%20b+c', '/public/q?next=../../limited&x=%2e%2e%2f..', '/public/...', '/public/.well-known/x',
    '/public/x..y/z.', '/public/%7Bid%7D', '/public/{id}', '/public/a;b=c', '/public/caf%C3%A9',
  ]) {
    const r = await req('GET', path)
    t.equal(r.status, 200, `GET ${path}: 200`)
    t.equal(r.json?.id, ups[0].id, `GET ${path}: the /public upstream answers`)
    t.equal(r.json?.url, path, `GET ${path}: forwarded exactly as matched`)
  }
})

t.test('badPathReason: the shapes, one by one', async (t) => {
  for (const p of ['/', '/a', '/a/b/', '/a..', '/a/.b', '/a/...', '/a?b=/../', '/a/%2e%2e.', '/a/%41', '/a%zz']) {
    t.equal(badPathReason(p), undefined, `${p} is safe`)
  }
  for (const p of ['a', '*', 'http://x/y', '//x', '/a\\b', '/a%5cb', '/a%2fb', '/a/./b', '/a/../b', '/a/.', '/a/..',
    '/a/%2e/b', '/a/%2E%2e', '/a/.%2E?x', '/a#b']) {
    t.not(badPathReason(p), undefined, `${p} is refused`)
  }
})
