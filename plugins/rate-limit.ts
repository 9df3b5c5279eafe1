import type { IncomingMessage } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { GatewayError } from '../lib/errors.js'
import type { RedisClient, RedisConnectionConfig } from '../lib/cluster/redis-connection.js'
import { resolveRedisClient } from '../lib/cluster/redis-client.js'
import { optional, optionalForeign } from './optional.js'
import { createRateLimitMetrics, type RouteDecisions } from '../lib/metrics/ratelimit-metrics.js'
import { ceilSeconds, rateLimitHeader, type HeaderStyle } from '../lib/ratelimit/headers.js'
import { combine } from '../lib/ratelimit/combine.js'
import { StoreGuard, type Outcome, type StoreErrorPolicy } from '../lib/ratelimit/outage.js'
import {
  compileAllowList, compileClientIp, compileRoutePolicy, costOf, storeKey,
  type CompiledRule, type RateLimitRuleOptions, type RoutePolicy, type TrustProxy,
} from '../lib/ratelimit/policy.js'
import { kMatchedRoute, routeConfigOf } from '../lib/routes/route-config.js'
import { RoutePlans } from '../lib/routes/plans.js'
import { redactText } from '../lib/config/redact.js'
import type { RateLimitStore } from '../lib/ratelimit/types.js'
import { deadlineCap } from '../lib/ratelimit/deadline.js'
import { createStores } from '../lib/ratelimit/stores.js'

export type RouteRateLimit = RateLimitRuleOptions | RateLimitRuleOptions[] | false

export interface RateLimitPluginOptions {
  /** What happens while the store (Redis) fails (default fail_open). */
  onStoreError?: StoreErrorPolicy
  /** ms: deadline of each Redis call (default 50). */
  storeTimeout?: number
  /** draft (default): RateLimit-Policy + RateLimit; legacy: X-RateLimit-*; both; none. */
  headers?: HeaderStyle
  /** Client IPs or CIDR ranges never limited. */
  allowList?: string[]
  /** Read the client IP from X-Forwarded-For (as Fastify's trustProxy). Default false: the socket address. */
  trustProxy?: TrustProxy
  /** Limits of every route whose config sets no `rateLimit`. */
  default?: RateLimitRuleOptions | RateLimitRuleOptions[]
  /**
   * The connection when neither `fastify.gatewayRedis` nor `fastify.redis` (@fastify/redis) exists:
   * an ioredis client (yours: not closed by the plugin) or a `cluster.redis` config (the plugin connects and closes it).
   */
  redis?: RedisClient | RedisConnectionConfig
  /** Redis keys start with `${clusterName}:rl:` (default fastify-ha-gateway). */
  clusterName?: string
  /** Live gateway nodes, for onStoreError local (limit ÷ nodes). Default: the cluster plugin's view when registered, else 1. */
  liveNodes?: () => number
  /** ioredis auto-pipelining on the plugin's own connection (default false: the store already sends one script call per turn). */
  autoPipelining?: boolean
  /**
   * Cork the plugin's own connection for the rest of each event-loop turn (lib/cluster/redis-connection.ts coalesceWrites).
   * Default false: the store already sends one script call per turn, and corking would hold it one more turn.
   */
  coalesceWrites?: boolean
  /** Bring your own stores (tests, other backends): exact decisions, and lease mode. */
  store?: RateLimitStore
  leaseStore?: RateLimitStore
  /**
   * The limiter of onStoreError `local` (yours: not closed by the plugin). Default: one in this process's memory.
   * node.workers: the primary's, so the node admits its share once across its workers.
   */
  localStore?: RateLimitStore
  /**
   * What a request over its limit is refused with, as @fastify/rate-limit's option of that name: the value returned
   * is raised through Fastify (the route's error handler answers it; an object that is not an Error is sent as the
   * body, with its `statusCode` as the status). Default: FHG_ERR_RATE_LIMITED from lib/errors.ts. Retry-After and
   * the RateLimit headers are set on the reply before. Not called for FHG_ERR_RATE_LIMIT_UNAVAILABLE (the store failed).
   */
  errorResponseBuilder?: (request: FastifyRequest, context: RateLimitErrorContext) => object
}

/** What `errorResponseBuilder` is told (the fields of @fastify/rate-limit's context, same names). */
export interface RateLimitErrorContext {
  /** 429. */
  statusCode: number
  /** Always false: this limiter does not ban. */
  ban: boolean
  /** When to come back, as the default message says it: `3 s`. */
  after: string
  /** The limit of the rule that refused the request (the most restrictive one). */
  max: number
  /** ms until the client may retry. */
  ttl: number
}

/** What the limiter decided for an Upgrade request (which Fastify never routes): go on, or the answer to write on its socket. */
export type UpgradeDecision =
  | { readonly allowed: true }
  | { readonly allowed: false, readonly status: number, readonly headers: Record<string, string>, readonly body: object }

/** The `fastify.gatewayRateLimit` decorator: what the limiter runs on, for status pages and tests. */
export interface GatewayRateLimit {
  /**
   * Count an Upgrade request (a WebSocket handshake) against its route's limits, as a request is counted: `config`
   * is the route config it matched. Refused: the status (429, or 503 when the store fails closed), the rate-limit
   * headers and the error body to answer on the socket.
   */
  checkUpgrade (req: IncomingMessage, config: object): Promise<UpgradeDecision>
  /** The Redis client in use (undefined: single node, in memory). */
  readonly redis: RedisClient | undefined
  /** True while the store fails and the onStoreError policy applies. */
  readonly degraded: boolean
  readonly onStoreError: StoreErrorPolicy
}

declare module 'fastify' {
  interface FastifyInstance {
    gatewayRateLimit: GatewayRateLimit
  }
  interface FastifyContextConfig {
    /** Limits of this route (default: the plugin's `default`; false or []: none). */
    rateLimit?: RouteRateLimit
  }
}

/** A route's compiled limits plus what its requests need at hand. */
interface Plan {
  policy: RoutePolicy
  counters: RouteDecisions | undefined
  lastShadowLog: number
}
const NONE = Symbol('no limits')

async function rateLimitPlugin (fastify: FastifyInstance, opts: RateLimitPluginOptions): Promise<void> {
  const style: HeaderStyle = opts.headers ?? 'draft'
  const prefix = `${opts.clusterName ?? 'fastify-ha-gateway'}:rl:`
  const allow = compileAllowList(opts.allowList)
  const clientIp = compileClientIp(opts.trustProxy)
  const policy = opts.onStoreError ?? 'fail_open'
  const storeTimeout = opts.storeTimeout ?? 50

  // where the connection comes from: the cluster plugin, @fastify/redis, then our own options
  // one log line per lost connection, not one per reconnect attempt (calls are counted and logged by the guard)
  let reported = false
  const redis = resolveRedisClient({
    existing: [optional(fastify, 'gatewayRedis'), optionalForeign(fastify, 'redis')],
    config: opts.redis,
    connection: {
      // past the store deadline's cap: ioredis's timer counts our loop's stalls, the deadline does not (deadline.ts)
      commandTimeout: Math.max(deadlineCap(storeTimeout) * 2, 1000),
      autoPipelining: opts.autoPipelining ?? false,
      coalesceWrites: opts.coalesceWrites ?? false,
      onError: (err) => {
        if (reported) return
        reported = true
        fastify.log.warn({ err: redactText(err.message) }, 'rate-limit redis connection failing; reconnecting')
      },
    },
  })
  const client = redis.client
  if (redis.owned) client?.on('ready', () => { reported = false })

  const gm = optional(fastify, 'gatewayMetrics')
  const metrics = gm === undefined ? undefined : createRateLimitMetrics(gm.registry)
  const stores = createStores({
    client,
    timeout: storeTimeout,
    store: opts.store,
    leaseStore: opts.leaseStore,
    local: policy === 'local',
    localStore: opts.localStore,
    // the Redis store times each script call (one per batch of decisions); a store of the app's is timed per decision
    onDuration: metrics === undefined ? undefined : (s) => metrics.storeDuration(s),
    // a late reply: Redis is alive, and counted what the policy decided; probe at once, and let metrics say so
    onLate: (allowed, total) => { metrics?.late(allowed, total); guard.probeNow() },
  })
  const guard = new StoreGuard({
    policy,
    localStore: stores.local,
    liveNodes: opts.liveNodes ?? clusterNodes(fastify),
    log: fastify.log,
    onError: metrics === undefined ? undefined : () => metrics.storeError(),
    onDegraded: metrics === undefined ? undefined : (b) => metrics.setDegraded(b),
    onDuration: metrics === undefined ? undefined : (s) => metrics.storeDuration(s),
  })
  // the client is back: probe on the next request instead of waiting for the probe interval
  const onReady = (): void => guard.probeNow()
  client?.on('ready', onReady)

  // --- per-route plans, resolved lazily on the first request (routes declared before or after the plugin) ---
  const plans = new RoutePlans<Plan | typeof NONE, FastifyRequest>((config, request) => {
    const c = config as { rateLimit?: RouteRateLimit, gatewayRoute?: string }
    const route = c.gatewayRoute ?? request.routeOptions.url ?? 'unknown'
    const compiled = compileRoutePolicy(c.rateLimit === undefined ? opts.default : c.rateLimit, route, `route ${route}: rateLimit`, prefix)
    return compiled === undefined ? NONE : { policy: compiled, counters: metrics?.forRoute(route), lastShadowLog: 0 }
  })

  function onRequest (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    let plan: Plan | typeof NONE
    try {
      plan = plans.of(routeConfigOf(request), request)
    } catch (err) {
      done(err as Error)
      return
    }
    if (plan === NONE) { done(); return }
    let ip = ''
    if (plan.policy.needsIp || allow !== undefined) {
      ip = clientIp(request)
      if (allow !== undefined && allow(ip)) { done(); return }
    }
    const rules = plan.policy.rules
    // decided now (true: go on, or `refused`); `done()` runs outside the try, so an error of a later hook is never reported twice
    let proceed = false
    let refused: object | undefined
    try {
      if (rules.length === 1) {
        const r = rules[0]
        const cost = costOf(r, request)
        if (cost === 0) proceed = true
        else {
          const store = storeOf(r)
          const key = storeKey(r, request, ip)
          // a lease with units left (or the memory store) decides now: no promise, no object kept for the request
          const now = guard.consumeNow(store, key, r.rule, cost)
          if (now !== undefined) {
            refused = settle(plan, request, reply, ip, now)
            proceed = refused === undefined
          } else {
            const st = new Pending(plan, request, reply, done, ip)
            guard.consume(store, key, r.rule, cost, timedOf(r)).then((o) => { st.after(o) }, done)
          }
        }
      } else {
        const calls = rules.map((r) => {
          const cost = costOf(r, request)
          return cost === 0 ? undefined : guard.consume(storeOf(r), storeKey(r, request, ip), r.rule, cost, timedOf(r))
        })
        const st = new Pending(plan, request, reply, done, ip)
        Promise.all(calls).then((outs) => { st.after(outs) }, done)
      }
    } catch (err) {
      done(err as Error) // a key or cost function that throws is a bug of the app: 500
      return
    }
    if (proceed) done()
    else if (refused !== undefined) done(refused as Error)
  }

  function storeOf (r: CompiledRule): RateLimitStore {
    return r.mode === 'lease' ? stores.lease : stores.exact
  }

  /** Whether the guard times this rule's calls: exact decisions of a store that does not time itself. */
  function timedOf (r: CompiledRule): boolean {
    return r.mode === 'exact' && !stores.timesItself
  }

  /** One request waiting for its decisions. */
  class Pending {
    constructor (readonly plan: Plan, readonly request: FastifyRequest, readonly reply: FastifyReply,
      readonly done: HookHandlerDoneFunction, readonly ip: string) {}

    /** `done()` runs outside the try, so an error of a later hook is never reported twice. */
    after (outcomes: Outcome | undefined | ReadonlyArray<Outcome | undefined>): void {
      let refused: object | undefined
      try {
        refused = settle(this.plan, this.request, this.reply, this.ip, outcomes)
      } catch (err) {
        this.done(err as Error)
        return
      }
      // a refusal goes through Fastify's error path (as a throwing hook's would): the route's error handler answers it
      this.done(refused as Error | undefined)
    }
  }

  /**
   * Count, set headers, and return what to refuse the request with (raised by the hook's `done(err)`, so the route's
   * error handler answers it) or undefined to let it go on. The decision itself: lib/ratelimit/combine.ts.
   */
  function settle (plan: Plan, request: FastifyRequest, reply: FastifyReply, ip: string,
    outcomes: Outcome | undefined | ReadonlyArray<Outcome | undefined>): object | undefined {
    const rules = plan.policy.rules
    const c = combine(rules, outcomes)
    if (c.shadow !== -1) logShadow(plan, rules[c.shadow], request, ip)
    if (plan.counters !== undefined) plan.counters[c.label]++ // one label per request, the one that explains its answer
    const d = c.shown === -1 ? undefined : Array.isArray(outcomes) ? outcomes[c.shown] as Outcome : outcomes as Outcome
    if (d !== undefined && style !== 'none') {
      if (style !== 'legacy') {
        reply.header('ratelimit-policy', plan.policy.policyHeader)
        reply.header('ratelimit', rateLimitHeader(rules[c.shown].policy, d))
      }
      if (style !== 'draft') {
        reply.header('x-ratelimit-limit', String(d.limit))
        reply.header('x-ratelimit-remaining', String(Math.max(0, Math.floor(d.remaining))))
        reply.header('x-ratelimit-reset', String(ceilSeconds(d.resetMs)))
      }
    }
    if (c.kind === 'deny') {
      const s = Math.max(1, ceilSeconds(c.retryAfter))
      // the status first (as raiseError does): an error handler reads it, and a builder's object needs no statusCode
      reply.code(429).header('retry-after', String(s))
      if (opts.errorResponseBuilder === undefined) return new GatewayError('RATE_LIMITED', `${s} s`)
      return opts.errorResponseBuilder(request, { statusCode: 429, ban: false, after: `${s} s`, max: d?.limit ?? 0, ttl: c.retryAfter })
    }
    if (c.kind === 'unavailable') {
      reply.code(503).header('retry-after', '1')
      return new GatewayError('RATE_LIMIT_UNAVAILABLE')
    }
    return undefined
  }

  function logShadow (plan: Plan, r: CompiledRule, request: FastifyRequest, ip: string): void {
    const now = Date.now()
    if (now - plan.lastShadowLog < 1000) return // at most one line per route per second
    plan.lastShadowLog = now
    request.log.info({ route: plan.policy.route, policy: r.policy.name, key: r.kind === 'route' ? 'route' : r.kind === 'ip' ? ip : r.kind }, 'shadow rate limit exceeded (not enforced)')
  }

  /**
   * An Upgrade request through the same hook as any request: a request and a reply shaped as the hook reads
   * them (the matched route config on the request, headers and status collected from the reply).
   */
  async function checkUpgrade (req: IncomingMessage, config: object): Promise<UpgradeDecision> {
    const headers: Record<string, string> = {}
    let status = 0
    const reply = {
      header (name: string, value: string) { headers[name] = value; return reply },
      code (s: number) { status = s; return reply },
    }
    const route = (config as { gatewayRoute?: string }).gatewayRoute
    const request = {
      [kMatchedRoute]: config,
      routeOptions: { config, url: route },
      headers: req.headers,
      raw: req,
      method: req.method,
      url: req.url,
      ip: req.socket.remoteAddress,
      log: fastify.log,
    }
    return await new Promise((resolve) => {
      onRequest(request as unknown as FastifyRequest, reply as unknown as FastifyReply, (err?: Error | null) => {
        if (err == null) { resolve({ allowed: true }); return }
        const e = err as Error & { statusCode?: number, toJSON?: () => object }
        const body = typeof e.toJSON === 'function' ? e.toJSON() : e instanceof Error ? { statusCode: e.statusCode ?? 500, error: e.name, message: e.message } : e
        resolve({ allowed: false, status: status > 0 ? status : e.statusCode ?? 500, headers, body })
      })
    })
  }

  fastify.decorate('gatewayRateLimit', {
    redis: client,
    get degraded () { return guard.degraded },
    onStoreError: policy,
    checkUpgrade,
  } satisfies GatewayRateLimit)
  fastify.addHook('onRequest', onRequest)
  // checks the limits of routes declared after the plugin at boot; earlier routes are checked on their first request
  fastify.addHook('onRoute', (route) => {
    const rl = (route.config as { rateLimit?: RouteRateLimit } | undefined)?.rateLimit
    if (rl !== undefined) compileRoutePolicy(rl, route.url, `route ${route.url}: rateLimit`)
  })
  fastify.addHook('onClose', async () => {
    client?.off('ready', onReady)
    await stores.close()
    await redis.close()
  })
}

/** Live nodes from the cluster plugin's membership view (`fastify.cluster.nodes()`), when it is registered. */
function clusterNodes (fastify: FastifyInstance): (() => number) | undefined {
  const c = optional(fastify, 'cluster')
  return c === undefined ? undefined : () => c.nodes().length
}

export default fp(rateLimitPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-rate-limit',
})
