import { EventEmitter } from 'node:events'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import replyFrom from '@fastify/reply-from'
import { Agent } from 'undici'
import type { Strategy, PickContext } from '../lib/balancers/types.js'
import { GatewayError } from '../lib/errors.js'
import { Attempt } from '../lib/proxy/attempt.js'
import { classifyError, upstreamError } from '../lib/proxy/classify.js'
import { TrackingDispatcher, type AttemptObserver } from '../lib/proxy/dispatcher.js'
import { compileHashOn, type HashKeyFn } from '../lib/proxy/hash-key.js'
import { setForwarded, stripHopByHop, type HeaderBag } from '../lib/proxy/headers.js'
import { createProxyMetrics, type RouteMetrics } from '../lib/metrics/proxy-metrics.js'
import type { UpstreamEntry, UpstreamSpec, UpstreamTimeouts } from '../lib/upstream/registry.js'
import { UpstreamRegistry } from '../lib/upstream/registry.js'
import type { TargetSpec, Target } from '../lib/upstream/target.js'
import type { LoadBalancerOptions, ProxyOptions, LoadBalancer } from '../types/index.js'

const kProxy = Symbol('fastify-ha-gateway.proxy')

/** Everything a route resolved once: the request path only reads it. */
interface RoutePlan {
  upstreamName: string
  strategy: Strategy | undefined
  hashKey: HashKeyFn | undefined
  label: string
  entry: UpstreamEntry | undefined
  generation: number
  metrics: RouteMetrics | undefined
}

/** Per-request proxy state; one small object per proxied request. */
class ProxyState {
  readonly plan: RoutePlan
  readonly reply: FastifyReply
  current: Attempt | undefined = undefined
  tried: Target[] = []
  /** Listener for the client response's 'close': ends the try if the client left first. */
  readonly onClose: () => void
  constructor (plan: RoutePlan, reply: FastifyReply, onClosed: (st: ProxyState) => void) {
    this.plan = plan
    this.reply = reply
    this.onClose = () => { onClosed(this) }
  }
}

type ProxiedRequest = FastifyRequest & { [kProxy]?: ProxyState }

/** The `fastify.loadBalancer` decorator: upstream registry plus runtime target changes. */
class GatewayLoadBalancer extends EventEmitter implements LoadBalancer {
  readonly upstreams: UpstreamRegistry
  readonly agent: Agent
  constructor (upstreams: UpstreamRegistry, agent: Agent) {
    super()
    this.upstreams = upstreams
    this.agent = agent
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

// Reused pick context: balancers must not keep it, and a pick is synchronous.
const pickCtx: PickContext = { now: 0, tried: undefined, hashKey: undefined }

async function loadBalancerPlugin (fastify: FastifyInstance, opts: LoadBalancerOptions): Promise<void> {
  const upstreams = new UpstreamRegistry(opts.timeouts)
  for (const [name, spec] of Object.entries(opts.upstreams ?? {})) upstreams.upsert(name, spec)

  const agent = new Agent({
    connect: { timeout: upstreams.defaultTimeouts.connect },
    keepAliveTimeout: opts.agent?.keepAliveTimeout ?? 4_000,
    connections: opts.agent?.connections ?? null,
    pipelining: 1,
  })

  const metrics = fastify.hasDecorator('gatewayMetrics')
    ? createProxyMetrics(fastify.gatewayMetrics.registry, upstreams)
    : undefined

  const observer: AttemptObserver = {
    onHeaders (a) { a.target.recordLatency(a.headersMs, Date.now()) },
    onEnd (a) {
      a.target.onRequestEnd(-1, 0)
      lb.emit('attempt', a)
    },
  }
  const lb = new GatewayLoadBalancer(upstreams, agent)
  const dispatcher = new TrackingDispatcher(agent, observer)

  await fastify.register(replyFrom, {
    undici: dispatcher as unknown as Agent,
    disableRequestLogging: true,
  })

  // --- route plans, resolved once per route (WeakMap: routes declared before or after the plugin alike) ---
  const plans = new WeakMap<object, RoutePlan>()

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
    }
  }

  function planFor (request: FastifyRequest, override: ProxyOptions | undefined): RoutePlan {
    const config = request.routeOptions.config as ProxyOptions & { gatewayRoute?: string }
    const key = override ?? config
    let plan = plans.get(key)
    if (plan === undefined) {
      plan = makePlan({ ...config, ...override }, config.gatewayRoute ?? request.routeOptions.url ?? 'unknown')
      plans.set(key, plan)
    }
    return plan
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

  // --- shared reply-from callbacks: no closures per request ---
  const fromOptions = {
    getUpstream (req: FastifyRequest): string {
      return (req as ProxiedRequest)[kProxy]!.current!.target.origin
    },
    rewriteRequestHeaders (req: FastifyRequest, headers: HeaderBag): HeaderBag {
      stripHopByHop(headers)
      return setForwarded(headers, req.ip, req.protocol, req.headers.host)
    },
    rewriteHeaders (headers: HeaderBag): HeaderBag {
      return stripHopByHop(headers)
    },
    onError (reply: FastifyReply, { error }: { error: Error }): void {
      const st = (reply.request as ProxiedRequest)[kProxy]
      const attempt = st?.current
      const cause = attempt?.error ?? error
      const kind = classifyError(cause)
      if (kind === 'aborted' || reply.sent || reply.raw.destroyed) return
      sendError(reply, upstreamError(kind, st?.plan.upstreamName ?? '', cause))
    },
    retryDelay (): null { return null },
  }

  function dispatch (reply: FastifyReply, st: ProxyState): void {
    const plan = st.plan
    const entry = resolveEntry(plan)
    if (entry === undefined) {
      sendError(reply, new GatewayError('UNKNOWN_UPSTREAM', plan.upstreamName))
      return
    }
    const strategy = plan.strategy ?? entry.strategy
    const request = reply.request
    pickCtx.now = Date.now()
    pickCtx.tried = st.tried
    pickCtx.hashKey = strategy === 'consistent_hash'
      ? (plan.hashKey ?? entry.hashKey)({ ip: request.ip, url: request.url, headers: request.headers })
      : undefined
    const target = entry.balancer(strategy).pick(entry.pool, pickCtx)
    pickCtx.tried = undefined
    if (target === undefined) {
      sendError(reply, new GatewayError('NO_HEALTHY_TARGET', entry.name))
      return
    }
    target.onRequestStart()
    const attempt = new Attempt(target, entry.timeouts.headers, entry.timeouts.body, st)
    st.current = attempt
    st.tried.push(target)
    dispatcher.arm(attempt)
    try {
      reply.from(undefined, fromOptions as never)
    } catch (err) {
      // reply-from validates the URL synchronously (e.g. path traversal): the try never started.
      dispatcher.disarm()
      attempt.ended = true
      target.onRequestEnd(-1, 0)
      const status = (err as { statusCode?: number }).statusCode ?? 500
      reply.code(status).send({ statusCode: status, code: 'FHG_ERR_BAD_REQUEST', error: 'Bad Request', message: (err as Error).message })
    }
  }

  function onClosed (st: ProxyState): void {
    const a = st.current
    if (a !== undefined && !a.ended) a.abort(new Error('client closed the connection'))
    const m = st.plan.metrics
    if (m !== undefined) {
      const raw = st.reply.raw
      const status = raw.writableFinished ? raw.statusCode : 499
      const cls = Math.floor(status / 100) - 1
      m.byClass[cls < 0 || cls > 4 ? 4 : cls].inc()
      m.duration.observe(st.reply.elapsedTime / 1000)
    }
  }

  function proxy (this: FastifyReply, override?: ProxyOptions): FastifyReply {
    const request = this.request as ProxiedRequest
    let plan: RoutePlan
    try {
      plan = planFor(request, override)
    } catch (err) {
      return sendError(this, err as GatewayError)
    }
    const st = new ProxyState(plan, this, onClosed)
    request[kProxy] = st
    this.raw.once('close', st.onClose)
    dispatch(this, st)
    return this
  }

  fastify.decorate('loadBalancer', lb)
  fastify.decorateReply('proxy', proxy)

  fastify.addHook('onClose', async () => {
    await agent.close().catch(() => agent.destroy())
  })
}

function sendError (reply: FastifyReply, err: GatewayError): FastifyReply {
  if (reply.sent) return reply
  return reply.code(err.statusCode).type('application/json; charset=utf-8').send(JSON.stringify(err.toJSON()))
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
