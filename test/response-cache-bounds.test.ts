// The response cache cannot fill Redis (issue 11, point 8): cache-busting query strings against
// routes[].cache.maxEntries and cache.maxBytes, measured in Redis itself; routes[].cache.query keys;
// the bounded script on Redis Cluster (its keys share one slot).
import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { Cluster, Redis } from 'ioredis'
import { startNode, type StartedNode } from '../plugins/gateway.js'
import { validateConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { startRedis, startRedisCluster, type RedisProcess } from './helpers/redis.js'
import { get } from './helpers/gateway.js'
import { until } from './helpers/poll.js'

const BODY = Buffer.alloc(1000, 'b')
let redis: RedisProcess
let upstream: http.Server
let upstreamUrl: string
let asked = 0
t.before(async () => {
  redis = await startRedis()
  upstream = http.createServer((req, res) => {
    asked++
    res.writeHead(200, { 'content-type': 'text/plain', 'x-url': req.url ?? '' })
    res.end(BODY)
  })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`
})
t.teardown(async () => {
  upstream.closeAllConnections()
  upstream.close()
  await redis.stop()
})

function config (name: string, redisConfig: string | { nodes: Array<{ host: string, port: number }> }, extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput {
  return {
    node: { id: `gw-${name}`, host: '127.0.0.1', port: 0 },
    cluster: { name, redis: redisConfig, heartbeatInterval: '500ms' },
    upstreams: { u: { targets: [{ id: 'u1', url: upstreamUrl }] } },
    routes: [
      { path: '/few', upstream: 'u', cache: { ttl: '10m', maxEntries: 20 } },
      { path: '/many', upstream: 'u', cache: { ttl: '10m', maxEntries: 100_000 } },
      { path: '/ignore', upstream: 'u', cache: { ttl: '10m', query: 'ignore' } },
      { path: '/named', upstream: 'u', cache: { ttl: '10m', query: ['v', 'lang'] } },
    ],
    metrics: { enabled: false },
    ...extra,
  }
}

/** Every key of the response cache in Redis, with what each takes (MEMORY USAGE). */
async function cacheKeys (client: Redis, name: string): Promise<{ entries: string[], bytes: number, all: string[] }> {
  const all = await client.keys(`${name}:cache:*`)
  let bytes = 0
  for (const k of all) bytes += Number(await client.memory('USAGE', k, 'SAMPLES', '0'))
  return { entries: all.filter((k) => k.includes(':e:')), bytes, all }
}

/** Send `n` GETs with distinct query strings under `path`, waiting for each answer to be stored before the next burst. */
async function bust (url: string, path: string, n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i += 10) {
    await Promise.all(Array.from({ length: Math.min(10, n - i) }, async (_x, j) => {
      const r = await get(`${url}${path}?bust=${tag}-${i + j}`)
      if (r.status !== 200) throw new Error(`bust: ${r.status}`)
    }))
  }
}

async function hitSoon (url: string): Promise<boolean> {
  try {
    await until(async () => (await get(url)).headers['x-cache'] === 'HIT', 5000, `HIT ${url}`, 50)
    return true
  } catch { return false }
}

t.test('routes[].cache.maxEntries bounds one route\'s keys under cache-busting; the newest answers stay cached', async (t) => {
  const node: StartedNode = await startNode(validateConfig(config('rcb1', redis.url)))
  const client = new Redis(redis.url)
  t.teardown(async () => { await node.close(); client.disconnect() })
  await bust(node.address, '/few/x', 300, 'a')
  await until(async () => (await cacheKeys(client, 'rcb1')).entries.length >= 10, 5000, 'stores land')
  const { entries } = await cacheKeys(client, 'rcb1')
  t.ok(entries.length <= 20, `300 distinct URLs leave at most maxEntries (20) entry keys: ${entries.length}`)
  t.ok(entries.length >= 10, 'and the route still caches')
  // the newest URL is served from the cache
  const fresh = `${node.address}/few/x?bust=fresh`
  await get(fresh)
  t.ok(await hitSoon(fresh), 'a URL stored after the busting is a HIT')
})

t.test('cache.maxBytes bounds what every route together holds in Redis (MEMORY USAGE of its keys)', async (t) => {
  const maxBytes = 64 * 1024
  const node: StartedNode = await startNode(validateConfig(config('rcb2', redis.url, { cache: { maxBytes } })))
  const client = new Redis(redis.url)
  t.teardown(async () => { await node.close(); client.disconnect() })
  await bust(node.address, '/many/x', 400, 'b')
  await bust(node.address, '/few/y', 100, 'c')
  await until(async () => (await cacheKeys(client, 'rcb2')).entries.length >= 20, 5000, 'stores land')
  const { entries, bytes, all } = await cacheKeys(client, 'rcb2')
  const counted = Number(await client.get(all.find((k) => k.endsWith(':bytes'))!))
  t.ok(counted <= maxBytes, `the script's sum stays within maxBytes: ${counted} <= ${maxBytes}`)
  // what Redis reports for the keys themselves (the sum charges each entry a fixed overhead on top of its JSON)
  t.ok(bytes <= maxBytes * 1.25, `MEMORY USAGE of every response-cache key: ${bytes} B for a ${maxBytes} B bound`)
  t.ok(entries.length < 200, `500 distinct answers of ~1.4 KB JSON leave ${entries.length} entry keys`)
  t.ok(entries.length >= 20, 'and the cache still holds answers')
  const fresh = `${node.address}/many/x?bust=fresh`
  await get(fresh)
  t.ok(await hitSoon(fresh), 'a URL stored after the busting is a HIT')
  // a purge (a successful unsafe method) still reaches a bounded entry
  await get(fresh, { method: 'DELETE' })
  const after = await get(fresh)
  t.equal(after.headers['x-cache'], 'MISS', 'a DELETE on the URL purges it')
})

t.test('routes[].cache.query: ignore, or only the named parameters, make the cache key', async (t) => {
  const node: StartedNode = await startNode(validateConfig(config('rcb3', redis.url)))
  t.teardown(async () => { await node.close() })
  const u = node.address
  await get(`${u}/ignore/p?a=1`)
  t.ok(await hitSoon(`${u}/ignore/p?a=1`), 'stored')
  const other = await get(`${u}/ignore/p?a=2&b=3`)
  t.equal(other.headers['x-cache'], 'HIT', 'query: ignore: another query string is the same entry')
  t.equal(other.headers['x-url'], '/ignore/p?a=1', 'the answer stored for the first query')
  const before = asked
  await get(`${u}/named/p?v=1&r=x&lang=fr`)
  t.equal(asked, before + 1, 'the upstream gets the first request')
  t.ok(await hitSoon(`${u}/named/p?v=1&lang=fr&r=x`), 'named parameters')
  const reordered = await get(`${u}/named/p?r=y&v=1&lang=fr`)
  t.equal(reordered.headers['x-cache'], 'HIT', 'query [v, lang]: other parameters do not split the key')
  t.equal((await get(`${u}/named/p?v=2&lang=fr`)).headers['x-cache'], 'MISS', 'a named parameter does')
  t.equal((await get(`${u}/named/p?v=1`)).headers['x-cache'], 'MISS', 'so does one left out')
  const all = await get(`${u}/few/q?a=1`)
  t.ok(await hitSoon(`${u}/few/q?a=1`))
  t.equal((await get(`${u}/few/q?a=2`)).headers['x-cache'], 'MISS', 'default (all): every parameter is part of the key')
  t.equal(all.status, 200)
})

t.test('on Redis Cluster the bounded writes work (one slot) and stay bounded', async (t) => {
  const rc = await startRedisCluster(3)
  t.teardown(async () => { await rc.stop() })
  const node: StartedNode = await startNode(validateConfig(config('rcb4', { nodes: rc.nodes })))
  const cluster = new Cluster(rc.nodes)
  t.teardown(async () => { await node.close(); cluster.disconnect() })
  await until(() => node.app.cluster.redisUp, 10_000, 'node sees Redis')
  await bust(node.address, '/few/z', 100, 'd')
  const fresh = `${node.address}/few/z?bust=fresh`
  await get(fresh)
  t.ok(await hitSoon(fresh), 'stored and served through Redis Cluster (no CROSSSLOT)')
  let entries = 0
  for (const m of cluster.nodes('master')) entries += (await m.keys('rcb4:cache:*:e:*')).length
  t.ok(entries <= 20 && entries > 0, `maxEntries holds on Redis Cluster: ${entries}`)
})
