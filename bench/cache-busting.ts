// The response cache under cache-busting: every request a new query string, so every answer is a new
// entry. Prints Redis's used_memory and DBSIZE before and after, and the response cache's keys.
// Runs unchanged on a tree without the bounds (then routes[].cache.maxEntries and cache.maxBytes are
// left out of the config unless given).
// Usage: node --import tsx bench/cache-busting.ts [--requests 100000] [--body 512] [--concurrency 32]
//          [--max-entries N] [--max-bytes N] [--query all|ignore]
import http from 'node:http'
import { once } from 'node:events'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { Agent, request } from 'undici'
import { gateway } from '../plugins/gateway.js'
import { startRedis } from '../test/helpers/redis.js'

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '100000' },
    body: { type: 'string', default: '512' },
    concurrency: { type: 'string', default: '32' },
    'max-entries': { type: 'string' },
    'max-bytes': { type: 'string' },
    query: { type: 'string' },
  },
})
const REQUESTS = Number(args.requests)
const BODY = Buffer.alloc(Number(args.body), 'x')
const mb = (n: number): string => `${(n / 1048576).toFixed(2)} MB`

const upstream = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length })
  res.end(BODY)
})
upstream.listen(0, '127.0.0.1')
await once(upstream, 'listening')
const upstreamPort = (upstream.address() as { port: number }).port

const redis = await startRedis()
const admin = new Redis(redis.url)
const cache: Record<string, unknown> = { ttl: '10m' }
if (args['max-entries'] !== undefined) cache.maxEntries = Number(args['max-entries'])
if (args.query !== undefined) cache.query = args.query
const config: Record<string, unknown> = {
  node: { id: 'bench-cache', port: 0 },
  cluster: { name: 'bench', redis: redis.url },
  upstreams: { u: { targets: [{ id: 'u1', url: `http://127.0.0.1:${upstreamPort}` }] } },
  routes: [{ path: '/c', upstream: 'u', cache }],
  metrics: { enabled: false },
}
if (args['max-bytes'] !== undefined) config.cache = { maxBytes: Number(args['max-bytes']) }

const app = Fastify({ logger: false })
await app.register(gateway, config)
await app.listen({ host: '127.0.0.1', port: 0 })
const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

async function redisFigures (): Promise<{ used: number, keys: number, cacheKeys: number }> {
  const info = await admin.info('memory')
  const used = Number(/used_memory:(\d+)/.exec(info)?.[1])
  const keys = await admin.dbsize()
  let cacheKeys = 0
  let cursor = '0'
  do {
    const [next, batch] = await admin.scan(cursor, 'MATCH', 'bench:cache:*', 'COUNT', 1000)
    cursor = next
    cacheKeys += batch.length
  } while (cursor !== '0')
  return { used, keys, cacheKeys }
}

const before = await redisFigures()
const dispatcher = new Agent({ connections: Number(args.concurrency) })
let sent = 0
let hits = 0
let failed = 0
const started = Date.now()
async function worker (): Promise<void> {
  while (sent < REQUESTS) {
    const i = sent++
    const res = await request(`${base}/c/item?bust=${i}-${Math.random().toString(36).slice(2)}`, { dispatcher })
    await res.body.dump()
    if (res.statusCode !== 200) failed++
    if (res.headers['x-cache'] === 'HIT') hits++
  }
}
await Promise.all(Array.from({ length: Number(args.concurrency) }, worker))
const seconds = (Date.now() - started) / 1000
// the stores run after the answers: let the last ones land
await new Promise((resolve) => setTimeout(resolve, 500))
const after = await redisFigures()

console.log(`cache-busting: ${REQUESTS} GETs with distinct query strings, body ${BODY.length} B, ` +
  `route cache ${JSON.stringify(cache)}, cache.maxBytes ${args['max-bytes'] ?? 'default'} (${seconds.toFixed(1)} s, ${failed} failed, ${hits} hits)`)
console.log(`redis before: used_memory ${mb(before.used)}  DBSIZE ${before.keys}`)
console.log(`redis after:  used_memory ${mb(after.used)}  DBSIZE ${after.keys}  (response-cache keys ${after.cacheKeys}; growth ${mb(after.used - before.used)})`)

await app.close()
await dispatcher.close()
admin.disconnect()
await redis.kill()
upstream.close()
