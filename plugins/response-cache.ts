// The response cache plugin: answers GET/HEAD of routes with `cache: { ttl }` from the cluster's two-level
// cache, and stores the upstream's answers on a miss. The rules live in lib/cache (see policy.ts and
// response-cache.ts); this file only reads the route config and moves answers in and out of Fastify.
//
// Runs as a preHandler, after onRequest (rate limits count hits too). A hit is answered from there
// with `Age` and `X-Cache: HIT`; any other answer of a cached route gets `X-Cache: MISS`. A miss is
// stored from onSend while its body streams to the client (a body past maxBodySize is left untouched).
// Without Redis (or without the cluster plugin) the cache is this node's memory only.
import { pipeline } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { optional } from './optional.js'
import { GatewayError } from '../lib/errors.js'
import { cacheUrl, captureBody, decodeValue, type QueryKeying, isUnsafe, onlyIfCached, requestBypass, ResponseCache, storedHeaders, storeDecision, type CachedResponse, type Lookup } from '../lib/cache/index.js'
import { DistributedCache, createClusterContext, type ClusterContext } from '../lib/cluster/index.js'
import type { CacheGroup } from '../lib/cluster/cache.js'
import { DEFAULTS } from '../lib/config/defaults.js'
import { parseDuration } from '../lib/config/duration.js'
import { kRouteTable, routeConfigOf } from '../lib/routes/route-config.js'
import { RoutePlans } from '../lib/routes/plans.js'

export interface ResponseCachePluginOptions {
  /** Answers (and remembered versions) held in this node's memory. Default 10000. */
  maxEntries?: number
  /** Bytes of answers held in this node's memory. Default 64 MiB. */
  maxBytes?: number
  /** Largest body stored; a bigger one streams through uncached. Default 1 MiB. */
  maxBodySize?: number
  /** ms; deadline of each Redis lookup or store (a late lookup is a miss). Default 100. */
  timeout?: number
  /** Bytes the cache may hold in Redis, all routes together (`cache.maxBytes`). Default 64 MiB. */
  redisMaxBytes?: number
}

export interface ResponseCacheDecorator {
  /** Forget every cached answer of `url` (path and query, as requested) on every node; false when Redis could not be told. */
  purge (url: string): Promise<boolean>
  /** What this node holds. */
  stats (): { entries: number, bytes: number }
  /** True while invalidations from the other nodes reach this one (always false without Redis). */
  readonly listening: boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    responseCache: ResponseCacheDecorator
  }
}

/** A route's cache settings as the plan keeps them. */
interface Plan { ttl: number, query: QueryKeying, group: CacheGroup }

/** Per request of a cached route: what lookup found, for onSend. */
interface State extends Lookup {
  plan: Plan
  /** GET or HEAD (else: POST, PUT, PATCH or DELETE, whose success purges the URL) */
  safe: boolean
  /** the answer may be stored (a GET the request did not forbid) */
  store: boolean
  hit: boolean
}

const kState = Symbol('fhg.responseCache')
type CachedRequest = FastifyRequest & { [kState]: State | null }

async function responseCachePlugin (fastify: FastifyInstance, opts: ResponseCachePluginOptions): Promise<void> {
  const maxBodySize = opts.maxBodySize ?? 1024 * 1024
  const derived = {
    namespace: 'rc',
    maxEntries: opts.maxEntries ?? 10_000,
    maxBytes: opts.maxBytes ?? 64 * 1024 * 1024,
    timeout: opts.timeout ?? 100,
    decode: decodeValue,
    redisMaxBytes: opts.redisMaxBytes ?? DEFAULTS.cache.maxBytes,
    // a hit must never outlive its answer's own expiry (checked on each hit): the local TTL only bounds missed invalidations
    localTtl: 60_000,
  }
  let own: ClusterContext | undefined
  let backend: DistributedCache
  const cluster = optional(fastify, 'cluster')
  if (cluster !== undefined) {
    backend = cluster.cache.derive(derived)
  } else {
    own = createClusterContext({ name: 'local' })
    backend = new DistributedCache(own, derived)
  }
  const cache = new ResponseCache(backend)
  fastify.addHook('onReady', async () => { backend.start() })
  fastify.addHook('onClose', async () => {
    await backend.close()
    await own?.close()
  })

  // a configured route's entry (normalized), or a code route's config.cache as written; null: not cached
  const plans = new RoutePlans<Plan | null, string | undefined>((config, url) => {
    const { cache: c, gatewayRoute } = config as { cache?: { ttl?: number | string, maxEntries?: number, query?: 'all' | 'ignore' | string[] }, gatewayRoute?: string }
    const ttl = c?.ttl === undefined ? 0 : parseDuration(c.ttl)
    const q = c?.query ?? DEFAULTS.routeCache.query
    return ttl > 0
      ? { ttl, query: Array.isArray(q) ? new Set(q) : q, group: { name: gatewayRoute ?? url ?? '', maxEntries: c?.maxEntries ?? DEFAULTS.routeCache.maxEntries } }
      : null
  })

  fastify.decorateRequest(kState, null)

  function lookup (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    const plan = plans.of(routeConfigOf(request), request.routeOptions.url)
    if (plan === null) { done(); return }
    const method = request.method
    const safe = method === 'GET' || method === 'HEAD'
    // OPTIONS: neither served from the cache nor a write that invalidates it
    if (!safe && !isUnsafe(method)) { done(); return }
    const why = requestBypass(method, request.headers)
    const st: State = { plan, url: cacheUrl(request.url, plan.query), record: undefined, safe, store: false, hit: false }
    ;(request as CachedRequest)[kState] = st
    if (!st.safe) { done(); return }
    // no-cache: not served from the cache, but the fresh answer replaces what it holds
    st.store = method === 'GET' && (why === undefined || why === 'no-cache')
    if (why !== undefined) { done(); return }
    const local = cache.lookupLocal(st, request.headers, Date.now())
    if (local === undefined) { miss(request, reply, done); return }
    if (local !== null) { serve(request, reply, st, local); return }
    cache.lookupRemote(st, request.headers).then((hit) => {
      if (hit === undefined) miss(request, reply, done)
      else serve(request, reply, st, hit)
    }, () => { miss(request, reply, done) })
  }

  function miss (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    if (request.headers['cache-control'] === undefined || !onlyIfCached(request.headers)) { done(); return }
    // RFC 9111 §5.2.1.7: only a stored answer was wanted; raised through Fastify (the route's error handler answers)
    reply.code(504)
    done(new GatewayError('NOT_CACHED'))
  }

  function store (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: Error | null, payload?: unknown) => void): void {
    const st = (request as CachedRequest)[kState]
    if (st === null || st.hit) { done(null, payload); return }
    if (!st.safe) {
      // a successful write to the URL: its cached answers are stale everywhere. The answer waits for the purge
      // (bounded by the cache's Redis deadline) so the writer's next GET cannot read the old entry
      if (reply.statusCode >= 400) { done(null, payload); return }
      cache.purge(st.url).then(() => { done(null, payload) }, () => { done(null, payload) })
      return
    }
    reply.header('x-cache', 'MISS')
    // only an upstream's answer is stored (a stream, or a small body the proxy took whole: lib/proxy/respond.ts
    // takeWhole), not a fallback or an error of the gateway (strings)
    const whole = Buffer.isBuffer(payload)
    if (!st.store || !(whole || isStream(payload))) { done(null, payload); return }
    const now = Date.now()
    const headers = reply.getHeaders()
    const decision = storeDecision(reply.statusCode, headers, st.plan.ttl, now)
    const length = whole ? payload.length : Number(headers['content-length'] ?? 0)
    if (decision === undefined || length > maxBodySize) { done(null, payload); return }
    const entry = { status: reply.statusCode, headers: storedHeaders(headers), storedAt: now, age: decision.age, expiresAt: now + decision.ttl }
    const reqHeaders = request.headers
    const save = (body: Buffer | undefined): void => {
      if (body === undefined) return
      cache.store(st, reqHeaders, decision.vary, { ...entry, body }, st.plan.group).catch((err: unknown) => { request.log.debug({ err }, 'response not cached') })
    }
    if (whole) {
      save(payload)
      done(null, payload)
      return
    }
    const tap = captureBody(maxBodySize, save)
    pipeline(payload, tap, noop)
    done(null, tap)
  }

  // Only routes that can cache pay for the hooks: the gateway's route table (its entries may gain a
  // `cache` at run time) and routes declared after this plugin with `config.cache`.
  fastify.addHook('onRoute', (route) => {
    const config = route.config as Record<string | symbol, unknown> | undefined
    if (config === undefined || (config[kRouteTable] === undefined && config.cache === undefined)) return
    route.preHandler = withHook(route.preHandler, lookup)
    route.onSend = withHook(route.onSend, store)
  })

  fastify.decorate<ResponseCacheDecorator>('responseCache', {
    purge: async (url) => await cache.purge(url),
    stats: () => backend.stats(),
    get listening () { return backend.listening },
  })
}

function serve (request: FastifyRequest, reply: FastifyReply, st: State, hit: CachedResponse): void {
  st.hit = true
  const now = Date.now()
  for (const [name, value] of hit.headers) reply.header(name, value)
  reply.header('age', String(hit.age + Math.max(0, Math.floor((now - hit.storedAt) / 1000))))
  reply.header('x-cache', 'HIT')
  const inm = request.headers['if-none-match']
  if (hit.etag !== undefined && inm !== undefined && etagMatches(inm, hit.etag)) {
    reply.removeHeader('content-length')
    reply.code(304).send()
    return
  }
  reply.code(hit.status).send(hit.body)
}

/** If-None-Match against a stored ETag, weak comparison (RFC 9110 §13.1.2). */
function etagMatches (header: string, etag: string): boolean {
  if (header.trim() === '*') return true
  const bare = etag.replace(/^W\//, '')
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === bare)
}

function isStream (p: unknown): p is NodeJS.ReadableStream {
  return typeof p === 'object' && p !== null && typeof (p as { pipe?: unknown }).pipe === 'function'
}

function noop (): void {}

export const responseCache = fp(responseCachePlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-response-cache',
})
export default responseCache

function withHook<T> (existing: T | T[] | undefined, hook: T): T[] {
  if (existing === undefined) return [hook]
  return Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}
