import { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import replyFrom from '@fastify/reply-from'
import { Agent, Pool } from 'undici'
import type { Strategy } from '../lib/balancers/types.js'
import { GatewayError, raiseError } from '../lib/errors.js'
import { badPathReason } from '../lib/routes/path-guard.js'
import { compileTrust } from '../lib/trust-proxy.js'
import type { Attempt } from '../lib/proxy/attempt.js'
import { ProxyEngine, kProxy } from '../lib/proxy/engine.js'
import { FailoverRegistry } from '../lib/proxy/failover-registry.js'
import { liveConnector } from '../lib/proxy/live-connector.js'
import type { RoutePlan } from '../lib/proxy/types.js'
import { Notifications } from '../lib/failover/index.js'
import { createFailoverMetrics } from '../lib/metrics/failover-metrics.js'
import { compileHashOn } from '../lib/proxy/hash-key.js'
import { compileUpstreamPath } from '../lib/proxy/upstream-path.js'
import { UpgradeProxy, type UpgradeRoute } from '../lib/proxy/upgrade.js'
import { createUpgradeMetrics } from '../lib/metrics/upgrade-metrics.js'
import { routeConfigOf } from '../lib/routes/route-config.js'
import { RoutePlans } from '../lib/routes/plans.js'
import { createProxyMetrics } from '../lib/metrics/proxy-metrics.js'
import type { UpstreamEntry, UpstreamSpec, UpstreamTimeouts } from '../lib/upstream/registry.js'
import { UpstreamRegistry } from '../lib/upstream/registry.js'
import type { TargetSpec, Target } from '../lib/upstream/target.js'
import type { LoadBalancerOptions, ProxyOptions, LoadBalancer } from '../types/index.js'
import { turn } from '../lib/config/validate.js'
import { toFailoverSpecs, toUpstreamSpecs } from '../lib/upstream/specs.js'
import { optional } from './optional.js'

/** The `fastify.loadBalancer` decorator: upstream registry plus runtime target changes. */
class GatewayLoadBalancer extends EventEmitter implements LoadBalancer {
  readonly upstreams: UpstreamRegistry
  readonly agent: Agent
  readonly failover: FailoverRegistry
  readonly notifications: Notifications
  readonly upgrades: UpgradeProxy
  /** Each route config's upgrade plan, made once. */
  private readonly upgradePlans = new RoutePlans<UpgradeRoute>((c) => {
    const config = c as ProxyOptions
    const name = String(config.upstream)
    return {
      upstream: name,
      strategy: config.strategy,
      hashKey: config.hashOn !== undefined ? compileHashOn(config.hashOn) : undefined,
      label: config.gatewayRoute ?? 'unknown',
      maxRetries: this.failover.forRoute(name, config.failover, undefined).policy.maxRetries,
      preserveHost: config.preserveHost === true,
      upstreamPath: compileUpstreamPath(config.gatewayRoute ?? '/', config),
    }
  })
  constructor (upstreams: UpstreamRegistry, agent: Agent, failover: FailoverRegistry, notifications: Notifications, upgrades: UpgradeProxy) {
    super()
    this.upstreams = upstreams
    this.agent = agent
    this.failover = failover
    this.notifications = notifications
    this.upgrades = upgrades
  }

  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, config: ProxyOptions): void {
    this.upgrades.handle(req, socket, head, this.upgradePlans.of(config, undefined))
  }

  addUpstream (name: string, spec: UpstreamSpec): UpstreamEntry { return this.upstreams.upsert(name, spec) }
  removeUpstream (name: string): boolean { return this.upstreams.remove(name) }
  addTarget (upstream: string, spec: TargetSpec): Target { return this.mustGet(upstream).pool.add(spec) }
  removeTarget (upstream: string, id: string): Target { return this.mustGet(upstream).pool.remove(id) }
  setWeight (upstream: string, id: string, weight: number): Target { return this.mustGet(upstream).pool.setWeight(id, weight) }

  status (): Record<string, { strategy: Strategy, targets: Array<Record<string, unknown>> }> {
    const now = Date.now()
    const out: Record<string, { strategy: Strategy, targets: Array<Record<string, unknown>> }> = {}
    for (const e of this.upstreams) out[e.name] = { strategy: e.strategy, targets: e.pool.toJSON(now) }
    return out
  }

  private mustGet (name: string): UpstreamEntry {
    const e = this.upstreams.get(name)
    if (e === undefined) throw new GatewayError('UNKNOWN_UPSTREAM', name)
    return e
  }
}

async function loadBalancerPlugin (fastify: FastifyInstance, opts: LoadBalancerOptions): Promise<void> {
  // route confinement, decided once, before routing: the first onRequest hook of the gateway (registered
  // ahead of the rate limiter and the cache), so no route's filter, limit or upstream sees a refused path
  fastify.addHook('onRequest', refuseBadPath)
  const upstreams = new UpstreamRegistry(opts.timeouts)
  for (const [name, spec] of Object.entries(opts.upstreams ?? {})) upstreams.upsert(name, spec)

  // One Agent, one keep-alive Pool per origin. Each connection opens with the connect timeout the
  // origin's upstream has then (undici fixes an object `connect` per pool; config sync may change it).
  const agent = new Agent({
    keepAliveTimeout: opts.agent?.keepAliveTimeout ?? 4_000,
    connections: opts.agent?.connections ?? null,
    pipelining: 1,
    // upstream response heads up to this size pass (undici's default is Node's 16 KiB)
    maxHeaderSize: opts.agent?.maxHeaderSize ?? 64 * 1024,
    factory: (origin, poolOpts) => {
      // TLS and HTTP/2 of the origin's upstream, fixed when its pool is made
      const entry = upstreamOf(upstreams, String(origin))
      const allowH2 = entry?.http2 === true
      return new Pool(origin, {
        ...poolOpts,
        allowH2,
        // the connector offers h2 by ALPN (undici puts allowH2 there only when it builds the connector itself);
        // an http:// origin is spoken to in HTTP/1.1 (no h2c)
        connect: liveConnector(() => connectTimeoutFor(upstreams, String(origin)), { ...entry?.tls, allowH2 } as Parameters<typeof liveConnector>[1]),
      })
    },
  })

  const gm = optional(fastify, 'gatewayMetrics')
  const metrics = gm === undefined ? undefined : createProxyMetrics(gm.registry, upstreams)
  const foMetrics = gm === undefined ? undefined : createFailoverMetrics(gm.registry, upstreams)
  const notifications = Notifications.from(opts.notify, fastify.log)
  const failovers = new FailoverRegistry(opts.failover ?? {}, opts.circuitBreaker ?? {}, {
    onBudgetExhausted: (name) => foMetrics?.budgetExhausted(name),
    onCircuitEvent: (event) => notifications.emit(event),
  })
  // breakers exist from boot, so circuit_state and the admin status show them before traffic
  for (const e of upstreams) failovers.get(e)
  // config sync: each applied shared config switches the upstreams, then their failover; registered after the
  // cluster and before the gateway's route table, so this watcher runs first (a new route may name a new upstream)
  const unwatchConfig = optional(fastify, 'cluster')?.config.watch(async (next) => {
    upstreams.reconcile(toUpstreamSpecs(next))
    await turn()
    const f = toFailoverSpecs(next)
    failovers.reconcile(f.failover, f.circuitBreaker)
  })

  const trust = compileTrust(opts.trustProxy)
  const upgrades = new UpgradeProxy({
    upstreams,
    trust,
    metrics: gm === undefined ? undefined : createUpgradeMetrics(gm.registry),
    idleTimeout: opts.websocketIdle ?? 0,
    log: (msg, data) => { fastify.log.warn(data, msg) },
  })
  const lb = new GatewayLoadBalancer(upstreams, agent, failovers, notifications, upgrades)
  const engine = new ProxyEngine({
    upstreams,
    failovers,
    notifications,
    failoverMetrics: foMetrics,
    agent,
    trust,
    onAttempt: (a: Attempt) => { if (lb.listenerCount('attempt') > 0) lb.emit('attempt', a) },
  })

  await fastify.register(replyFrom, {
    undici: engine.dispatcher as unknown as Agent,
    disableRequestLogging: true,
  })
  // one request shape: the state slot exists on every request from the start
  if (!fastify.hasRequestDecorator(kProxy as unknown as string)) fastify.decorateRequest(kProxy as unknown as string, null)

  // --- route plans, resolved once per route config (routes declared before or after the plugin alike) ---

  function makePlan (src: ProxyOptions, label: string): RoutePlan {
    if (typeof src.upstream !== 'string') {
      throw new GatewayError('UNKNOWN_UPSTREAM', String(src.upstream), { cause: 'route has no config.upstream' })
    }
    return {
      upstreamName: src.upstream,
      strategy: src.strategy,
      hashKey: src.hashOn !== undefined ? compileHashOn(src.hashOn) : undefined,
      label,
      entry: undefined,
      generation: -1,
      metrics: metrics?.forRoute(label, src.upstream),
      failover: failovers.forRoute(src.upstream, src.failover, src.fallbackResponse),
      upstreamPath: compileUpstreamPath(src.gatewayRoute ?? '/', src),
      preserveHost: src.preserveHost === true,
      timeouts: src.timeouts,
    }
  }

  // keyed by the route's config, or by the options object a handler passes to reply.proxy(options)
  const plans = new RoutePlans<RoutePlan, FastifyRequest>((key, request) => {
    const config = routeConfigOf(request) as ProxyOptions
    return makePlan(key === config ? config : { ...config, ...key }, config.gatewayRoute ?? request.routeOptions.url ?? 'unknown')
  })

  function planFor (request: FastifyRequest, override: ProxyOptions | undefined): RoutePlan {
    return plans.of(override ?? routeConfigOf(request), request)
  }

  function resolveEntry (plan: RoutePlan): UpstreamEntry | undefined {
    let entry = plan.entry
    if (entry === undefined || entry.removed || entry.generation !== plan.generation) {
      entry = upstreams.get(plan.upstreamName)
      plan.entry = entry
      plan.generation = entry?.generation ?? -1
    }
    return entry
  }

  function proxy (this: FastifyReply, override?: ProxyOptions): FastifyReply {
    let plan: RoutePlan
    try {
      plan = planFor(this.request, override)
    } catch (err) {
      // through Fastify (as every answer the proxy gives itself): an app's error handler sees it
      if (err instanceof GatewayError) raiseError(this, err)
      else this.send(err)
      return this
    }
    const entry = resolveEntry(plan)
    if (entry === undefined) raiseError(this, new GatewayError('UNKNOWN_UPSTREAM', plan.upstreamName))
    else engine.proxy(this, plan, entry)
    return this
  }

  fastify.decorate('loadBalancer', lb)
  fastify.decorateReply('proxy', proxy)

  // upgraded sockets hold server.close(): they get the drain time (opts.drainTimeout), then a 1001 close
  fastify.addHook('preClose', (done) => {
    if (upgrades.size > 0) void upgrades.drain(opts.drainTimeout ?? 0)
    done()
  })
  fastify.addHook('onClose', async () => {
    unwatchConfig?.()
    upgrades.closeAll()
    failovers.dispose()
    await notifications.close()
    await agent.close().catch(() => agent.destroy())
  })
}

/**
 * 400 FHG_ERR_BAD_PATH for a path a URL parser would change (lib/routes/path-guard.ts). Checks the URL
 * the routes matched and, if an app's rewriteUrl changed it, the raw one the proxy forwards.
 */
function refuseBadPath (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
  const raw = request.raw.url
  const why = badPathReason(request.url) ?? (raw !== undefined && raw !== request.url ? badPathReason(raw) : undefined)
  if (why === undefined) { done(); return }
  reply.code(400)
  done(new GatewayError('BAD_PATH', why)) // through Fastify: the route's error handler answers it
}

function upstreamOf (upstreams: UpstreamRegistry, origin: string): UpstreamEntry | undefined {
  for (const e of upstreams) {
    for (const t of e.pool.targets) if (t.origin === origin) return e
  }
  return undefined
}

function connectTimeoutFor (upstreams: UpstreamRegistry, origin: string): number {
  for (const e of upstreams) {
    for (const t of e.pool.targets) if (t.origin === origin) return e.timeouts.connect
  }
  return upstreams.defaultTimeouts.connect
}

/**
 * Make an encapsulated scope hand request bodies to the proxy as raw streams
 * (no parsing, no body limit), so uploads stream through at any size.
 */
export function passThroughBodies (scope: FastifyInstance): void {
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
}

export type { UpstreamTimeouts }
export default fp(loadBalancerPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-load-balancer',
})
