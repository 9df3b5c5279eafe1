// lib/cache without a server: Cache-Control parsing, what may be served and stored, entries, body capture,
// the response cache over an in-memory two-level cache (vary, purge, bounds), and the sized LRU under it.
import t from 'tap'
import { PassThrough } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import {
  captureBody, decodeValue, encodeEntry, parseCacheControl, requestBypass, ResponseCache, storeDecision, storedHeaders, varyOf,
  type CachedResponse, type Lookup,
} from '../../lib/cache/index.js'
import { DistributedCache, createClusterContext } from '../../lib/cluster/index.js'
import { SizedLru } from '../../lib/cluster/sized-lru.js'

t.test('parseCacheControl', async (t) => {
  const d = parseCacheControl('Public, MAX-AGE=60, s-maxage="30", no-cache')
  t.same([d.public, d.maxAge, d.sMaxAge, d.noCache, d.noStore, d.private], [true, 60, 30, true, false, false])
  t.equal(parseCacheControl(['private="set-cookie"', 'no-store']).private, true, 'a field list is still private; several headers join')
  t.equal(parseCacheControl('max-age=abc').maxAge, 0, 'a bad delta-seconds is stale at once')
  t.equal(parseCacheControl('only-if-cached').onlyIfCached, true)
  t.equal(parseCacheControl(undefined).maxAge, undefined)
})

t.test('requestBypass: GET and HEAD only, and only when the request allows a stored answer', async (t) => {
  t.equal(requestBypass('GET', {}), undefined)
  t.equal(requestBypass('HEAD', {}), undefined)
  t.equal(requestBypass('POST', {}), 'method')
  t.equal(requestBypass('GET', { 'cache-control': 'no-store' }), 'no-store')
  t.equal(requestBypass('GET', { 'cache-control': 'private' }), 'private')
  t.equal(requestBypass('GET', { 'cache-control': 'no-cache' }), 'no-cache')
  t.equal(requestBypass('GET', { 'cache-control': 'max-age=0' }), 'no-cache')
  t.equal(requestBypass('GET', { pragma: 'no-cache' }), 'no-cache')
  t.equal(requestBypass('GET', { authorization: 'Bearer x' }), 'authorization')
  t.equal(requestBypass('GET', { range: 'bytes=0-1' }), 'range')
  t.equal(requestBypass('GET', { 'cache-control': 'only-if-cached' }), undefined)
})

t.test('storeDecision: status, directives, Vary, lifetimes', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  t.same(storeDecision(200, {}, 10_000, now), { ttl: 10_000, age: 0, vary: [] })
  for (const s of [201, 206, 302, 500, 503]) t.equal(storeDecision(s, {}, 10_000, now), undefined, `${s} is not stored`)
  t.ok(storeDecision(404, {}, 10_000, now), '404 is (RFC 9110 heuristically cacheable)')
  for (const cc of ['no-store', 'private', 'no-cache']) t.equal(storeDecision(200, { 'cache-control': cc }, 10_000, now), undefined, cc)
  t.equal(storeDecision(200, { 'set-cookie': ['a=b'] }, 10_000, now), undefined, 'Set-Cookie')
  t.equal(storeDecision(200, { vary: 'Accept, *' }, 10_000, now), undefined, 'Vary: *')
  t.same(storeDecision(200, { vary: 'Accept-Language, accept, ACCEPT' }, 10_000, now)?.vary, ['accept', 'accept-language'])
  t.equal(storeDecision(200, { 'cache-control': 'max-age=5' }, 10_000, now)?.ttl, 5000, 'max-age below the route ttl')
  t.equal(storeDecision(200, { 'cache-control': 'max-age=500' }, 10_000, now)?.ttl, 10_000, 'never above the route ttl')
  t.equal(storeDecision(200, { 'cache-control': 's-maxage=2, max-age=5' }, 10_000, now)?.ttl, 2000, 's-maxage wins for a shared cache')
  t.same(storeDecision(200, { 'cache-control': 'max-age=5', age: '3' }, 10_000, now), { ttl: 2000, age: 3, vary: [] }, 'Age counts')
  t.equal(storeDecision(200, { 'cache-control': 'max-age=5', age: '9' }, 10_000, now), undefined, 'already stale')
  const date = new Date(now).toUTCString()
  t.equal(storeDecision(200, { date, expires: new Date(now + 4000).toUTCString() }, 10_000, now)?.ttl, 4000, 'Expires - Date')
  t.equal(storeDecision(200, { expires: 'soon' }, 10_000, now), undefined, 'an invalid Expires is expired')
  t.same(varyOf(''), [])
})

t.test('entries: JSON round trip; hop-by-hop, cookies and rate-limit headers are not stored', async (t) => {
  const r: CachedResponse = { status: 200, headers: [['content-type', 'text/plain'], ['etag', '"x"']], body: Buffer.from([0, 1, 255]), storedAt: 1, age: 2, expiresAt: 3, etag: '"x"' }
  const back = decodeValue(JSON.stringify(encodeEntry(r)))
  t.same(back, r)
  t.equal(decodeValue('not json'), undefined)
  t.same(storedHeaders({ 'content-type': 'a', connection: 'close', 'set-cookie': ['x'], 'ratelimit-policy': '1', 'x-ratelimit-limit': 2, age: '1', 'content-length': 3 }),
    [['content-type', 'a'], ['content-length', '3']])
})

t.test('captureBody passes every byte through and copies up to the limit', async (t) => {
  const run = async (limit: number): Promise<{ out: Buffer, copy: Buffer | undefined | null }> => {
    let copy: Buffer | undefined | null = null
    const src = new PassThrough()
    const sink = new PassThrough()
    const chunks: Buffer[] = []
    sink.on('data', (c: Buffer) => chunks.push(c))
    const done = pipeline(src, captureBody(limit, (b) => { copy = b }), sink)
    src.write('hello ')
    src.end('world')
    await done
    return { out: Buffer.concat(chunks), copy }
  }
  const small = await run(100)
  t.equal(small.out.toString(), 'hello world')
  t.equal(small.copy?.toString(), 'hello world')
  const big = await run(8)
  t.equal(big.out.toString(), 'hello world', 'a body past the limit still streams whole')
  t.equal(big.copy, undefined, 'and is not copied')
})

t.test('ResponseCache over the in-memory two-level cache: hit, vary, purge', async (t) => {
  const ctx = createClusterContext({ name: 'mem' })
  const backend = new DistributedCache(ctx, { namespace: 'rc', decode: decodeValue, maxEntries: 100 })
  const cache = new ResponseCache(backend)
  const now = Date.now()
  const answer = (text: string): Omit<CachedResponse, 'etag'> => ({ status: 200, headers: [], body: Buffer.from(text), storedAt: now, age: 0, expiresAt: now + 10_000 })
  const lookup = (url: string): Lookup => ({ url, record: undefined })

  t.equal(cache.lookupLocal(lookup('/a'), {}, now), undefined, 'memory only: a local miss is certain')
  const l = lookup('/a')
  cache.lookupLocal(l, {}, now)
  await cache.store(l, { 'accept-language': 'en' }, ['accept-language'], answer('en'))
  t.equal(cache.lookupLocal(lookup('/a'), { 'accept-language': 'en' }, now)?.body.toString(), 'en')
  t.equal(cache.lookupLocal(lookup('/a'), { 'accept-language': 'fr' }, now), undefined, 'another variant')
  const lf = lookup('/a')
  cache.lookupLocal(lf, { 'accept-language': 'fr' }, now)
  await cache.store(lf, { 'accept-language': 'fr' }, ['accept-language'], answer('fr'))
  t.equal(cache.lookupLocal(lookup('/a'), { 'accept-language': 'en' }, now)?.body.toString(), 'en', 'both variants kept')
  t.equal(cache.lookupLocal(lookup('/a'), { 'accept-language': 'fr' }, now)?.body.toString(), 'fr')
  t.equal(cache.lookupLocal(lookup('/a'), { 'accept-language': 'en' }, now + 20_000), undefined, 'not after expiresAt')
  t.equal(await cache.purge('/a'), true)
  t.equal(cache.lookupLocal(lookup('/a'), { 'accept-language': 'en' }, now), undefined, 'purged: every variant')
  t.equal(cache.lookupLocal(lookup('/a'), { 'accept-language': 'fr' }, now), undefined)
  await backend.close()
  await ctx.close()
})

t.test('SizedLru: bounded by entries and by size, least recently used out first', async (t) => {
  const m = new SizedLru<string>(3, 10)
  m.set('a', 'a', 4)
  m.set('b', 'b', 4)
  m.get('a')
  m.set('c', 'c', 4) // 12 > 10: b (least recently used) goes
  t.same([...m.entries()].map(([k]) => k), ['a', 'c'])
  t.equal(m.size, 8)
  m.resize('a', 0)
  m.set('d', 'd', 1)
  m.set('e', 'e', 1) // 4 entries > 3: a goes
  t.same([...m.entries()].map(([k]) => k), ['c', 'd', 'e'])
  t.equal(m.size, 6)
  t.throws(() => new SizedLru(0))
})
