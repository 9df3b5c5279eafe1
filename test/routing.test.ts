// Routing the way gateway users route: hosts, stripPrefix/rewritePrefix, preserveHost, weighted splits
// (sticky by hashOn, changed by a config PUT), match on headers, any method token, hashOn fallback.
import t from 'tap'
import http from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import { ConfigError, validateConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(3, 'r') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

const TOKEN = 'routing-admin-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }

function config (routes: GatewayConfigInput['routes'], extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput {
  return {
    node: { id: 'gw-routing', port: 0 },
    upstreams: {
      stable: { targets: [{ id: 's', url: ups[0].url }] },
      canary: { targets: [{ id: 'c', url: ups[1].url }] },
      other: { targets: [{ id: 'o', url: ups[2].url }] },
    },
    routes,
    admin: { token: TOKEN },
    ...extra,
  }
}

async function listen (opts: GatewayConfigInput): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify({ logger: false })
  await app.register(gateway, opts)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address() as { port: number }
  return { app, url: `http://127.0.0.1:${addr.port}` }
}

/** A request with any method and Host, through node:http (undici would not send a custom Host). */
async function send (url: string, path: string, opts: { method?: string, headers?: Record<string, string> } = {}): Promise<{ status: number, body: any }> {
  return await new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      let text = ''
      res.on('data', (c) => { text += String(c) })
      res.on('end', () => {
        let body: unknown
        try { body = JSON.parse(text) } catch { body = text }
        resolve({ status: res.statusCode ?? 0, body })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('hosts: exact and wildcard routes match on Host before the path; host-less routes are the fallback', async (t) => {
  const { app, url } = await listen(config([
    { path: '/', upstream: 'stable' },
    { path: '/api', upstream: 'canary', hosts: ['api.example.com'] },
    { path: '/', upstream: 'other', hosts: ['*.example.com'] },
  ]))
  t.teardown(() => app.close())
  t.equal((await send(url, '/api/x', { headers: { host: 'api.example.com' } })).body.id, ups[1].id, 'exact host')
  t.equal((await send(url, '/api/x', { headers: { host: 'API.Example.com:8443' } })).body.id, ups[1].id, 'case and port ignored')
  t.equal((await send(url, '/other', { headers: { host: 'api.example.com' } })).body.id, ups[2].id, 'the exact host has no route for the path: the wildcard takes it')
  t.equal((await send(url, '/api/x', { headers: { host: 'a.b.example.com' } })).body.id, ups[2].id, 'wildcard: any subdomain depth')
  t.equal((await send(url, '/api/x', { headers: { host: 'example.com' } })).body.id, ups[0].id, 'the apex is not a subdomain: fallback')
  t.equal((await send(url, '/api/x', { headers: { host: 'evil.com' } })).body.id, ups[0].id, 'unknown host: the host-less route')
})

t.test('stripPrefix and rewritePrefix: the path upstream is cut from the matched path, query kept', async (t) => {
  const { app, url } = await listen(config([
    { path: '/strip', upstream: 'stable', stripPrefix: true },
    { path: '/v1/api', upstream: 'stable', rewritePrefix: '/v2' },
    { path: '/plain', upstream: 'stable' },
  ]))
  t.teardown(() => app.close())
  const cases: Array<[string, string]> = [
    ['/strip/users?x=1&y=2', '/users?x=1&y=2'],
    ['/strip', '/'],
    ['/strip/', '/'],
    ['/strip?q=1', '/?q=1'],
    ['/v1/api/users/7', '/v2/users/7'],
    ['/v1/api', '/v2'],
    ['/v1/api/a%20b?z', '/v2/a%20b?z'],
    ['/v1/%61pi/x', '/v2/x'],
    ['/plain/as/is?k', '/plain/as/is?k'],
  ]
  for (const [path, upstream] of cases) t.equal((await send(url, path)).body.url, upstream, `${path} -> ${upstream}`)
})

t.test('preserveHost sends the client Host upstream; the default sends the target host', async (t) => {
  const { app, url } = await listen(config([
    { path: '/keep', upstream: 'stable', preserveHost: true },
    { path: '/', upstream: 'stable' },
  ]))
  t.teardown(() => app.close())
  const kept = await send(url, '/keep', { headers: { host: 'shop.example.com' } })
  t.equal(kept.body.headers.host, 'shop.example.com')
  t.equal(kept.body.headers['x-forwarded-host'], 'shop.example.com')
  const dflt = await send(url, '/x', { headers: { host: 'shop.example.com' } })
  t.equal(dflt.body.headers.host, `127.0.0.1:${ups[0].port}`)
})

t.test('split 90/10: within 5 points over 1,000 requests; changed by a config PUT without a restart', async (t) => {
  const { app, url } = await listen(config([{ path: '/', split: [{ upstream: 'stable', weight: 90 }, { upstream: 'canary', weight: 10 }] }]))
  t.teardown(() => app.close())
  const count = async (n: number): Promise<Record<string, number>> => {
    const seen: Record<string, number> = {}
    for (let i = 0; i < n; i += 50) {
      const batch = await Promise.all(Array.from({ length: 50 }, async () => (await get(`${url}/s`)).body.id as string))
      for (const id of batch) seen[id] = (seen[id] ?? 0) + 1
    }
    return seen
  }
  const seen = await count(1000)
  const canary = (seen[ups[1].id] ?? 0) / 10
  t.ok(canary >= 5 && canary <= 15, `canary got ${canary} % (10 ± 5)`)
  t.equal((seen[ups[0].id] ?? 0) + (seen[ups[1].id] ?? 0), 1000, 'every request went to one side')

  // blue-green: switch everything to canary with a config PUT
  const cur = (await get(`${url}/gateway/config`, { headers: AUTH })).body
  cur.config.routes[0].split = [{ upstream: 'stable', weight: 0.0001 }, { upstream: 'canary', weight: 100 }]
  const put = await get(`${url}/gateway/config`, { method: 'PUT', headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(cur.version) }, body: JSON.stringify(cur.config) })
  t.equal(put.status, 200, 'config PUT accepted')
  const after = await count(100)
  t.ok((after[ups[1].id] ?? 0) >= 98, `after the PUT canary takes (nearly) all: ${JSON.stringify(after)}`)
})

t.test('a split sticky by hashOn: one client, one side; clients spread by weight', async (t) => {
  const { app, url } = await listen(config([{ path: '/', hashOn: 'header:x-user', split: [{ upstream: 'stable', weight: 50 }, { upstream: 'canary', weight: 50 }] }]))
  t.teardown(() => app.close())
  const sides = new Set<string>()
  for (let u = 0; u < 20; u++) {
    const ids = new Set<string>()
    for (let i = 0; i < 5; i++) ids.add((await send(url, '/x', { headers: { 'x-user': `user-${u}` } })).body.id)
    t.equal(ids.size, 1, `user-${u} always lands on one side`)
    for (const id of ids) sides.add(id)
  }
  t.equal(sides.size, 2, 'the users spread over both sides')
})

t.test('match headers: chosen clients go to the route with the condition, the rest to the plain one', async (t) => {
  const { app, url } = await listen(config([
    { path: '/', upstream: 'stable' },
    { path: '/', upstream: 'canary', match: { headers: { 'X-Canary': '1' } } },
  ]))
  t.teardown(() => app.close())
  t.equal((await send(url, '/a', { headers: { 'x-canary': '1' } })).body.id, ups[1].id, 'x-canary: 1 -> canary')
  t.equal((await send(url, '/a', { headers: { 'x-canary': '0' } })).body.id, ups[0].id, 'another value -> stable')
  t.equal((await send(url, '/a')).body.id, ups[0].id, 'no header -> stable')
})

t.test('any method token is proxied (PROPFIND, PURGE, MKCOL); routes[].methods takes them', async (t) => {
  const { app, url } = await listen(config([
    { path: '/dav', upstream: 'stable', methods: ['PROPFIND', 'MKCOL'] },
    { path: '/', upstream: 'other' },
  ]))
  t.teardown(() => app.close())
  const pf = await send(url, '/dav/x', { method: 'PROPFIND', headers: { depth: '1' } })
  t.equal(pf.status, 200)
  t.equal(pf.body.method, 'PROPFIND')
  t.equal(pf.body.id, ups[0].id, 'routed by its method')
  t.equal((await send(url, '/dav/x', { method: 'MKCOL' })).body.id, ups[0].id)
  const purge = await send(url, '/dav/x', { method: 'PURGE' })
  t.equal(purge.body.method, 'PURGE')
  t.equal(purge.body.id, ups[2].id, 'a method the /dav route leaves out falls to /')
})

t.test('consistent_hash without its hashOn key hashes on the client IP (stated fallback, not alternation)', async (t) => {
  const { app, url } = await listen(config([{ path: '/', upstream: 'pool', strategy: 'consistent_hash', hashOn: 'header:x-user' }], {
    upstreams: { pool: { targets: ups.map((u, i) => ({ id: `p${i}`, url: u.url })) } },
  }))
  t.teardown(() => app.close())
  const ids = new Set<string>()
  for (let i = 0; i < 12; i++) ids.add((await send(url, '/x')).body.id)
  t.equal(ids.size, 1, 'requests without x-user stick to one target (this client\'s IP)')
})

t.test('config cross-checks of the new route keys', async (t) => {
  const bad = (routes: unknown, path: string, fragment: string): void => {
    try {
      validateConfig({ upstreams: { a: { targets: [{ id: 'a', url: 'http://127.0.0.1:1' }] } }, routes } as GatewayConfigInput)
      t.fail(`expected an issue at ${path}`)
    } catch (err) {
      t.ok(err instanceof ConfigError)
      const hit = (err as ConfigError).issues.find((i) => i.path === path)
      t.match(hit?.message ?? '', fragment, `${path}: ${fragment}`)
    }
  }
  bad([{ path: '/', split: [{ upstream: 'a', weight: 1 }, { upstream: 'nope', weight: 1 }] }], 'routes[0].split[1].upstream', 'unknown upstream "nope"')
  bad([{ path: '/', split: [{ upstream: 'a', weight: 0 }] }], 'routes[0].split[0].weight', 'must be > 0')
  bad([{ path: '/', upstream: 'a', split: [{ upstream: 'a', weight: 1 }] }], 'routes[0].split', 'not both')
  bad([{ path: '/', split: [{ upstream: 'a', weight: 1 }, { upstream: 'a', weight: 2 }] }], 'routes[0].split[1].upstream', 'already split[0]')
  bad([{ path: '/', upstream: 'a', stripPrefix: true, rewritePrefix: '/v2' }], 'routes[0].rewritePrefix', 'not both')
  bad([{ path: '/', upstream: 'a', hosts: ['bad host'] }], 'routes[0].hosts[0]', 'host name')
  bad([{ path: '/', upstream: 'a' }, { path: '/', upstream: 'a' }], 'routes[1].path', 'duplicates')
  const ok = validateConfig({ upstreams: { a: { targets: [{ id: 'a', url: 'http://127.0.0.1:1' }] } }, routes: [
    { path: '/', upstream: 'a' }, { path: '/', upstream: 'a', hosts: ['x.io'] }, { path: '/', upstream: 'a', match: { headers: { 'x-b': '1' } } },
  ] })
  t.equal(ok.routes.length, 3, 'one path with different hosts or match conditions is not a duplicate')
})
