// The response cache (routes[].cache: { ttl }) through real gateways: hits and misses counted at the upstream,
// Cache-Control no-store / private (request and response), max-age, Vary, TTL expiry, unsafe methods,
// bodies past the size limit, memory-only mode, and two nodes on one Redis sharing entries and invalidations.
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { startNode, type StartedNode } from '../plugins/gateway.js'
import { validateConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { until } from './helpers/poll.js'

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

let redis: RedisProcess
let demo: UpstreamProcess
let custom: CustomUpstream
t.before(async () => {
  [redis, demo, custom] = await Promise.all([startRedis(), startUpstream({ id: 'rc-demo' }), startCustomUpstream()])
})
t.teardown(async () => {
  await demo.kill()
  custom.server.closeAllConnections()
  custom.server.close()
  await redis.stop()
})

interface CustomUpstream { url: string, server: http.Server, hits: (path: string) => number }

/**
 * An upstream whose answer headers come from the query: ?cc=<Cache-Control>&vary=<Vary>&expires=<ms from now>&cookie=1&etag=<tag>.
 * The body names how many times this path+query was asked and the request's Accept-Language.
 */
async function startCustomUpstream (): Promise<CustomUpstream> {
  const counts = new Map<string, number>()
  const server = http.createServer((req, res) => {
    const u = new URL(req.url!, 'http://x')
    const n = (counts.get(req.url!) ?? 0) + 1
    counts.set(req.url!, n)
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (u.searchParams.has('cc')) headers['cache-control'] = u.searchParams.get('cc')!
    if (u.searchParams.has('vary')) headers.vary = u.searchParams.get('vary')!
    if (u.searchParams.has('expires')) headers.expires = new Date(Date.now() + Number(u.searchParams.get('expires'))).toUTCString()
    if (u.searchParams.has('cookie')) headers['set-cookie'] = 'a=b'
    if (u.searchParams.has('etag')) headers.etag = `"${u.searchParams.get('etag')!}"`
    res.writeHead(200, headers)
    res.end(JSON.stringify({ n, lang: req.headers['accept-language'] ?? null, method: req.method }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  return { url: `http://127.0.0.1:${port}`, server, hits: (path) => counts.get(path) ?? 0 }
}

function config (id: string, redisUrl: string | undefined, cluster = 'rc'): GatewayConfigInput {
  return {
    node: { id, host: '127.0.0.1', port: 0 },
    ...(redisUrl === undefined ? {} : { cluster: { name: cluster, redis: redisUrl, heartbeatInterval: '500ms' } }),
    upstreams: {
      demo: { targets: [{ id: 'demo-1', url: demo.url }] },
      custom: { targets: [{ id: 'custom-1', url: custom.url }] },
    },
    routes: [
      { path: '/api', upstream: 'demo', cache: { ttl: '30s' } },
      { path: '/short', upstream: 'demo', cache: { ttl: '600ms' } },
      { path: '/plain', upstream: 'demo' },
      { path: '/big', upstream: 'demo', cache: { ttl: '30s' } },
      { path: '/cc', upstream: 'custom', cache: { ttl: '30s' } },
    ],
  }
}

const demoHits = async (path: string): Promise<number> => (await demo.stats()).byPath[path] ?? 0

async function node (id: string, redisUrl: string | undefined, cluster?: string): Promise<StartedNode> {
  const n = await startNode(validateConfig(config(id, redisUrl, cluster)))
  t.teardown(async () => { await n.close() })
  return n
}

t.test('one node on Redis: hit and miss, Age, HEAD, request and response directives, Vary, TTL, unsafe methods, big bodies', async (t) => {
  const a = await node('rc-a', redis.url)
  const base = `http://${a.address.replace(/^http:\/\//, '')}`

  await t.test('a GET is a MISS, then a HIT the upstream never sees, with Age and the upstream\'s headers', async (t) => {
    const first = await get(`${base}/api/items?page=1`)
    t.equal(first.status, 200)
    t.equal(first.headers['x-cache'], 'MISS', 'first: MISS')
    t.equal(await demoHits('/api/items'), 1, 'it reached the upstream')
    // the store happens once the body ended: wait for it to land (Redis write + local remember)
    await until(async () => await cached(`${base}/api/items?page=1`), 5000, 'stored', 5)
    const second = await get(`${base}/api/items?page=1`)
    t.equal(second.headers['x-cache'], 'HIT', 'second: HIT')
    t.equal(second.text, first.text, 'the same body')
    t.equal(second.headers['x-upstream-id'], 'rc-demo', 'upstream headers replayed')
    t.equal(second.headers['content-type'], first.headers['content-type'], 'same content-type')
    t.match(second.headers.age, /^\d+$/, 'Age header')
    t.equal(await demoHits('/api/items'), 1, 'the upstream saw one request')
    await sleep(1100)
    const later = await get(`${base}/api/items?page=1`)
    t.ok(Number(later.headers.age) >= 1, `Age grows (${String(later.headers.age)})`)
    const other = await get(`${base}/api/items?page=2`)
    t.equal(other.headers['x-cache'], 'MISS', 'the query is part of the key')

    const head = await get(`${base}/api/items?page=1`, { method: 'HEAD' })
    t.equal(head.status, 200, 'HEAD 200')
    t.equal(head.headers['x-cache'], 'HIT', 'HEAD is answered from the GET entry')
    t.equal(head.text, '', 'without a body')
    t.equal(await demoHits('/api/items'), 2, 'only page=2 reached the upstream')
  })

  await t.test('a route without cache is never cached and has no X-Cache', async (t) => {
    const r1 = await get(`${base}/plain/x`)
    const r2 = await get(`${base}/plain/x`)
    t.equal(r1.headers['x-cache'], undefined)
    t.equal(r2.headers['x-cache'], undefined)
    t.equal(await demoHits('/plain/x'), 2)
  })

  await t.test('request Cache-Control no-store, private and no-cache bypass the cache', async (t) => {
    await warm(`${base}/api/req`)
    const before = await demoHits('/api/req')
    for (const cc of ['no-store', 'private', 'no-cache', 'max-age=0']) {
      const r = await get(`${base}/api/req`, { headers: { 'cache-control': cc } })
      t.equal(r.headers['x-cache'], 'MISS', `request ${cc}: MISS`)
    }
    const auth = await get(`${base}/api/req`, { headers: { authorization: 'Bearer x' } })
    t.equal(auth.headers['x-cache'], 'MISS', 'a request with Authorization bypasses the cache')
    t.equal(await demoHits('/api/req'), before + 5, 'each went to the upstream')
    t.equal((await get(`${base}/api/req`)).headers['x-cache'], 'HIT', 'others still hit')
  })

  await t.test('response no-store, private, no-cache, Set-Cookie and Vary: * are never stored', async (t) => {
    for (const q of ['cc=no-store', 'cc=private', 'cc=private,%20max-age=60', 'cc=no-cache', 'cookie=1', 'vary=*']) {
      const path = `/cc/r?${q}`
      const r1 = await get(`${base}${path}`)
      await sleep(50)
      const r2 = await get(`${base}${path}`)
      t.equal(r2.headers['x-cache'], 'MISS', `${q}: second GET is a MISS`)
      t.same([r1.body.n, r2.body.n], [1, 2], `${q}: both reached the upstream`)
    }
    const pub = '/cc/r?cc=public,%20max-age=60'
    await warm(`${base}${pub}`)
    t.equal(custom.hits(pub), 1, 'public, max-age=60 is stored')
  })

  await t.test('max-age (and s-maxage, Expires) shorter than the route ttl win', async (t) => {
    for (const q of ['cc=max-age=1', 'cc=s-maxage=1,%20max-age=60', 'expires=1000']) {
      const path = `/cc/m?${q}`
      await warm(`${base}${path}`)
      t.equal(custom.hits(path), 1, `${q}: cached`)
      await sleep(1300)
      const r = await get(`${base}${path}`)
      t.equal(r.headers['x-cache'], 'MISS', `${q}: expired after ~1 s although the route keeps 30 s`)
      t.equal(custom.hits(path), 2)
    }
  })

  await t.test('Vary: the named request headers are part of the key', async (t) => {
    const path = '/cc/v?vary=Accept-Language'
    const en = { 'accept-language': 'en' }
    const fr = { 'accept-language': 'fr' }
    await warm(`${base}${path}`, en)
    t.equal((await get(`${base}${path}`, { headers: en })).body.lang, 'en')
    const f1 = await get(`${base}${path}`, { headers: fr })
    t.equal(f1.headers['x-cache'], 'MISS', 'another language is another entry')
    t.equal(f1.body.lang, 'fr')
    await warm(`${base}${path}`, fr)
    const e2 = await get(`${base}${path}`, { headers: en })
    t.equal(e2.headers['x-cache'], 'HIT')
    t.equal(e2.body.lang, 'en', 'each variant keeps its own answer')
    t.equal((await get(`${base}${path}`, { headers: fr })).body.lang, 'fr')
    t.equal(custom.hits(path), 2, 'one upstream request per variant')
  })

  await t.test('an entry expires after the route ttl', async (t) => {
    await warm(`${base}/short/t`)
    t.equal(await demoHits('/short/t'), 1)
    await sleep(800)
    const r = await get(`${base}/short/t`)
    t.equal(r.headers['x-cache'], 'MISS', 'ttl 600 ms: gone after 800 ms')
    t.equal(await demoHits('/short/t'), 2)
  })

  await t.test('non-GET methods are not cached, and a successful one invalidates the URL', async (t) => {
    await warm(`${base}/api/w`)
    for (let i = 0; i < 2; i++) {
      const r = await get(`${base}/api/w`, { method: 'POST', body: 'x' })
      t.equal(r.status, 200)
      t.equal(r.headers['x-cache'], undefined, 'no X-Cache on a POST')
    }
    t.equal((await demo.stats()).byMethod.POST >= 2, true)
    const after = await get(`${base}/api/w`)
    t.equal(after.headers['x-cache'], 'MISS', 'the POST purged the cached GET')
  })

  await t.test('If-None-Match on a hit answers 304', async (t) => {
    const path = '/cc/e?etag=abc'
    await warm(`${base}${path}`)
    const r = await get(`${base}${path}`, { headers: { 'if-none-match': '"abc"' } })
    t.equal(r.status, 304)
    t.equal(r.headers['x-cache'], 'HIT')
    t.equal(r.text, '')
  })

  await t.test('a body past maxBodySize streams through whole and is not stored', async (t) => {
    const size = 1536 * 1024
    for (let i = 0; i < 2; i++) {
      const r = await get(`${base}/big/${size}`)
      t.equal(r.status, 200)
      t.equal(r.headers['x-cache'], 'MISS', `GET ${i + 1}: MISS`)
      t.equal(r.text.length, size, 'the whole body arrived')
    }
    t.equal(await demoHits(`/big/${size}`), 2, 'both reached the upstream')
    await warm(`${base}/big/1000`)
    t.equal(await demoHits('/big/1000'), 1, 'a small body is stored')
    const stats = a.app.responseCache.stats()
    t.ok(stats.entries > 0 && stats.bytes > 0 && stats.bytes < 1024 * 1024, `bounded local memory (${stats.entries} entries, ${stats.bytes} bytes)`)
  })
})

t.test('two nodes on one Redis: an entry stored by one is served by the other; an invalidation reaches the other', async (t) => {
  const a = await node('rc-2a', redis.url, 'rc2')
  const b = await node('rc-2b', redis.url, 'rc2')
  await until(() => a.app.responseCache.listening && b.app.responseCache.listening, 5000, 'both nodes listen for invalidations')
  const path = '/api/shared'
  await warm(`${a.address}${path}`)
  t.equal(await demoHits(path), 1)
  const onB = await get(`${b.address}${path}`)
  t.equal(onB.headers['x-cache'], 'HIT', 'B serves what A stored (from Redis)')
  t.equal(await demoHits(path), 1, 'the upstream saw one request for both nodes')
  t.equal((await get(`${b.address}${path}`)).headers['x-cache'], 'HIT', 'then from its own memory')

  // B holds the entry locally; a write through A purges it everywhere
  const w = await get(`${a.address}${path}`, { method: 'PUT', body: '{}' })
  t.equal(w.status, 200)
  const ms = await until(async () => (await get(`${b.address}${path}`)).headers['x-cache'] === 'MISS', 2000, 'B misses after the purge on A', 5)
  t.comment(`invalidation reached B after <= ${ms.toFixed(0)} ms`)
  t.ok(ms < 1000, 'within a second')

  // the explicit purge of the API, after B stored the new answer
  await warm(`${b.address}${path}`)
  t.equal((await get(`${a.address}${path}`)).headers['x-cache'], 'HIT', 'A serves what B stored')
  t.ok(await cached(`${b.address}${path}`), 'B holds it')
  t.equal(await a.app.responseCache.purge(path), true)
  t.notOk(await cached(`${a.address}${path}`), 'gone on A at once')
  await until(async () => !(await cached(`${b.address}${path}`)), 2000, 'B misses after purge() on A', 5)
  t.pass('purge() reached B')
  const only = await get(`${b.address}${path}`, { headers: { 'cache-control': 'only-if-cached' } })
  t.equal(only.status, 504, 'only-if-cached on a miss: 504, the upstream is not asked')
})

t.test('memory-only node: cached locally; Redis down: misses, never hangs', async (t) => {
  const m = await node('rc-mem', undefined)
  const path = '/api/mem'
  await warm(`${m.address}${path}`)
  t.equal(await demoHits(path), 1, 'cached in memory without Redis')

  const r2 = await startRedis()
  t.teardown(async () => { await r2.stop() })
  const d = await node('rc-down', r2.url, 'rc3')
  await until(() => d.app.cluster.redisUp, 5000, 'redis up')
  await r2.kill('SIGSTOP') // up but silent: every Redis call hangs until its deadline
  t.teardown(async () => { await r2.kill('SIGCONT') })
  const t0 = performance.now()
  const r = await get(`${d.address}/api/hung`)
  const took = performance.now() - t0
  t.equal(r.status, 200, 'served by the upstream')
  t.equal(r.headers['x-cache'], 'MISS')
  t.ok(took < 2000, `a hung Redis costs at most the lookup deadline (${took.toFixed(0)} ms)`)
  await r2.kill('SIGCONT')
})

/**
 * One GET (a MISS that reaches the upstream), then wait until the answer is stored: `only-if-cached` asks the
 * cache alone (504 until the store landed), so the upstream sees exactly one request.
 */
async function warm (url: string, headers: Record<string, string> = {}): Promise<void> {
  const first = await get(url, { headers })
  if (first.headers['x-cache'] === 'HIT') return
  await until(async () => (await get(url, { headers: { ...headers, 'cache-control': 'only-if-cached' } })).status === 200, 5000, `${url} stored`, 5)
}

/** Whether `url` is cached on that node (never asks the upstream). */
async function cached (url: string, headers: Record<string, string> = {}): Promise<boolean> {
  const r = await get(url, { headers: { ...headers, 'cache-control': 'only-if-cached' } })
  return r.status === 200 && r.headers['x-cache'] === 'HIT'
}
