import { EventEmitter } from 'node:events'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import replyFrom from '@fastify/reply-from'
import { Agent, Pool } from 'undici'
import type { Strategy, PickContext } from '../lib/balancers/types.js'
import { GatewayError } from '../lib/errors.js'
import { Attempt, PASS, DROP, RETRY, FALLBACK } from '../lib/proxy/attempt.js'
import { bufferBody } from '../lib/proxy/body.js'
import { classifyError, upstreamError } from '../lib/proxy/classify.js'
import { FailoverRegistry, type RouteFailover, type UpstreamFailover, type FallbackResponse } from '../lib/proxy/failover-registry.js'
import { breakerOutcome, REFUSED, IDEMPOTENCY_KEY_HEADER, isIdempotent, Notifications, type FailedTry, type RetryReason } from '../lib/failover/index.js'
import { createFailoverMetrics } from '../lib/metrics/failover-metrics.js'
import { TrackingDispatcher, type AttemptObserver } from '../lib/proxy/dispatcher.js'
import { compileHashOn, type HashKeyFn } from '../lib/proxy/hash-key.js'
import { setForwarded, stripHopByHop, type HeaderBag } from '../lib/proxy/headers.js'
import { routeConfigOf } from '../lib/routes/route-config.js'
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
  failover: RouteFailover
}

// request body kinds: none (replayable), buffered (replayable), streamed (sent once)
const NO_BODY = 0
const BUFFERED = 1
const STREAMED = 2

/** Per-request proxy state; one small object per proxied request. */
class ProxyState {
  readonly plan: RoutePlan
  readonly reply: FastifyReply
  current: Attempt | undefined = undefined
  /** A hedge in flight beside `current`. */
  hedge: Attempt | undefined = undefined
  /** The try whose response (or error) reply-from is handling now: set by the observer, read synchronously by the callbacks. */
  responding: Attempt | undefined = undefined
  tried: Target[] = []
  /** The upstream being tried (the primary, or the fallback pool) and its failover state. */
  entry: UpstreamEntry | undefined = undefined
  up: UpstreamFailover | undefined = undefined
  primaryUp: UpstreamFailover | undefined = undefined
  inFallback = false
  retries = 0
  /** The client left (or the deadline answered): nothing more is dispatched. */
  done = false
  /** A retry-budget slot taken by a retry decision, handed to the next try. */
  slotHeld = false
  /** Epoch-ms when proxying started: origin of the overall deadline. */
  startedAt = 0
  bodyKind = NO_BODY
  bodySize = 0
  fromOpts: object
  /** Backoff or hedge timer, and the overall deadline timer. */
  timer: NodeJS.Timeout | undefined = undefined
  deadline: NodeJS.Timeout | undefined = undefined
  /** Listener for the client response's 'close': ends the try if the client left first. */
  readonly onClose: () => void
  constructor (plan: RoutePlan, reply: FastifyReply, onClosed: (st: ProxyState) => void, fromOpts: object) {
    this.plan = plan
    this.reply = reply
    this.fromOpts = fromOpts
    this.onClose = () => { onClosed(this) }
  }
}

type ProxiedRequest = FastifyRequest & { [kProxy]?: ProxyState }

/** The `fastify.loadBalancer` decorator: upstream registry plus runtime target changes. */
class GatewayLoadBalancer extends EventEmitter implements LoadBalancer {
  readonly upstreams: UpstreamRegistry
  readonly agent: Agent
  readonly failover: FailoverRegistry
  readonly notifications: Notifications
  constructor (upstreams: UpstreamRegistry, agent: Agent, failover: FailoverRegistry, notifications: Notifications) {
    super()
    this.upstreams = upstreams
    this.agent = agent
    this.failover = failover
    this.notifications = notifications
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
// Reused retry question: RetryPolicy.decide is synchronous and keeps nothing.
const failed: FailedTry = { method: '', retries: 0, reason: 'other', idempotencyKey: false, bodyBuffered: true, bodySize: 0, headersSent: false, startedAt: 0, now: 0, retryAfter: undefined }
const HEDGE_LOST = new Error('hedged request lost the race')
const CLIENT_CLOSED = new Error('client closed the connection')
const EMPTY_HEADERS: HeaderBag = Object.freeze({}) as HeaderBag

function deadlineError (): Error {
  const err = new Error('request deadline passed')
  err.name = 'TimeoutError'
  return err
}

function abortAttempt (a: Attempt): void { a.abort(HEDGE_LOST) }

async function loadBalancerPlugin (fastify: FastifyInstance, opts: LoadBalancerOptions): Promise<void> {
  const upstreams = new UpstreamRegistry(opts.timeouts)
  for (const [name, spec] of Object.entries(opts.upstreams ?? {})) upstreams.upsert(name, spec)

  // One Agent, one keep-alive Pool per origin. The factory gives each origin the
  // connect timeout of the upstream that owns it (undici sets it per pool, not per request).
  const agent = new Agent({
    keepAliveTimeout: opts.agent?.keepAliveTimeout ?? 4_000,
    connections: opts.agent?.connections ?? null,
    pipelining: 1,
    factory: (origin, poolOpts) => new Pool(origin, {
      ...poolOpts,
      connect: { timeout: connectTimeoutFor(upstreams, String(origin)) },
    }),
  })

  const metrics = fastify.hasDecorator('gatewayMetrics')
    ? createProxyMetrics(fastify.gatewayMetrics.registry, upstreams)
    : undefined
  const foMetrics = fastify.hasDecorator('gatewayMetrics')
    ? createFailoverMetrics(fastify.gatewayMetrics.registry, upstreams)
    : undefined
  const notifications = Notifications.from(opts.notify, fastify.log)
  const failovers = new FailoverRegistry(opts.failover ?? {}, opts.circuitBreaker ?? {}, {
    onBudgetExhausted: (name) => foMetrics?.budgetExhausted(name),
    onCircuitEvent: (event) => notifications.emit(event),
  })
  // breakers exist from boot, so circuit_state and the admin status show them before traffic
  for (const e of upstreams) failovers.get(e)

  const observer: AttemptObserver = {
    onHeaders (a) {
      a.target.recordLatency(a.headersMs, Date.now())
      const st = a.owner as ProxyState | undefined
      if (st === undefined) return
      st.responding = a
      if (st.done || a.aborted) { a.verdict = DROP; return }
      const other = a === st.current ? st.hedge : st.current
      if (!st.plan.failover.policy.retriesStatus(a.statusCode)) {
        if (st.timer !== undefined && st.retries === 0) { clearTimeout(st.timer); st.timer = undefined }
        if (other !== undefined) settleRace(st, a, other)
        return
      }
      if (other !== undefined && !other.ended) {
        // a failed try while another still runs: drop it, the other answers
        a.verdict = DROP
        st.current = other
        st.hedge = undefined
        return
      }
      a.verdict = afterFailure(st, a, a.statusCode, a.retryAfter)
    },
    onEnd (a) {
      a.target.onRequestEnd(-1, 0)
      a.notifyEnd(Date.now())
      const f = a.failover
      if (f !== undefined) {
        if (a.ticket !== -1) f.breakers?.record(a.target, a.ticket, breakerOutcome(a.error === undefined ? a.statusCode : undefined, a.error))
        if (a.slot) { a.slot = false; f.budget.release() }
      }
      if (a.error !== undefined && a.statusCode === 0) {
        const st = a.owner as ProxyState | undefined
        if (st !== undefined) st.responding = a
      }
      lb.emit('attempt', a)
    },
  }
  const lb = new GatewayLoadBalancer(upstreams, agent, failovers, notifications)
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
      failover: failovers.forRoute(src.upstream, src.failover, src.fallbackResponse),
    }
  }

  function planFor (request: FastifyRequest, override: ProxyOptions | undefined): RoutePlan {
    const config = routeConfigOf(request) as ProxyOptions & { gatewayRoute?: string }
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
      // startTry sets `responding` to the try being dispatched right before reply.from()
      return (req as ProxiedRequest)[kProxy]!.responding!.target.origin
    },
    rewriteRequestHeaders (req: FastifyRequest, headers: HeaderBag): HeaderBag {
      stripHopByHop(headers)
      return setForwarded(headers, req.ip, req.protocol, req.headers.host)
    },
    rewriteHeaders (headers: HeaderBag, req: FastifyRequest): HeaderBag {
      const a = (req as ProxiedRequest)[kProxy]?.responding
      // a response the proxy drops (retry, lost hedge) must leave nothing on the reply
      if (a !== undefined && a.verdict !== PASS) return EMPTY_HEADERS
      return stripHopByHop(headers)
    },
    onResponse (req: FastifyRequest, reply: FastifyReply, res: { stream: NodeJS.ReadableStream & { destroy?: () => void, dump?: () => Promise<void> } }): void {
      const st = (req as ProxiedRequest)[kProxy]
      const a = st?.responding
      if (st === undefined || a === undefined || a.verdict === PASS) {
        if (st !== undefined) st.responding = undefined
        reply.send(res.stream)
        return
      }
      st.responding = undefined
      discard(res.stream)
      if (a.verdict === RETRY) next(st, a.retryDelay)
      else if (a.verdict === FALLBACK) sendStatic(st)
    },
    onError (reply: FastifyReply, { error }: { error: Error }): void {
      const st = (reply.request as ProxiedRequest)[kProxy]
      const a = st?.responding
      if (st === undefined || a === undefined) {
        if (!reply.sent) sendError(reply, upstreamError(classifyError(error), st?.plan.upstreamName ?? '', error))
        return
      }
      st.responding = undefined
      if (a !== st.current && a !== st.hedge) return // a lost hedge or a stale try
      if (st.done || reply.sent || reply.raw.destroyed) return
      const other = a === st.current ? st.hedge : st.current
      if (other !== undefined && !other.ended) {
        st.current = other
        st.hedge = undefined
        return
      }
      const cause = a.error ?? error
      const kind = classifyError(cause)
      const v = afterFailure(st, a, kind, undefined)
      if (v === RETRY) next(st, a.retryDelay)
      else if (v === FALLBACK) sendStatic(st)
      else sendError(reply, upstreamError(kind, st.entry?.name ?? st.plan.upstreamName, cause))
    },
    retryDelay (): null { return null },
  }

  /** A failed try (transport error class or status): retry, fall back, or let the failure stand. */
  function afterFailure (st: ProxyState, a: Attempt, reason: RetryReason, retryAfter: string | string[] | undefined): typeof PASS | typeof RETRY | typeof FALLBACK {
    const policy = st.plan.failover.policy
    if (st.done || st.reply.sent || !policy.retriesOn(reason)) return PASS
    const up = st.up!
    const request = st.reply.request
    const now = Date.now()
    failed.method = request.method
    failed.retries = st.retries
    failed.reason = reason
    failed.idempotencyKey = request.headers[IDEMPOTENCY_KEY_HEADER] !== undefined
    failed.bodyBuffered = st.bodyKind !== STREAMED
    failed.bodySize = st.bodySize
    failed.headersSent = st.reply.sent
    failed.startedAt = st.startedAt
    failed.now = now
    failed.retryAfter = retryAfter
    const d = policy.decide(failed, up.budget)
    let why: string
    if (d.retry) {
      if (hasUntried(st, now)) {
        st.retries++
        st.slotHeld = true
        a.retryDelay = d.delayMs
        foMetrics?.retry(up.name, reason)
        notifications.emit({ type: 'retry', timestamp: now, upstream: up.name, target: a.target.id, attempt: st.retries, reason, delayMs: d.delayMs, method: request.method })
        return RETRY
      }
      up.budget.release()
      why = 'no_target'
    } else {
      why = d.why
    }
    notifications.emit({ type: 'retries_exhausted', timestamp: now, upstream: up.name, tries: st.retries + 1, reason, why, method: request.method })
    if (why === 'headers_sent' || why === 'deadline') return PASS
    // every allowed try failed: the fallback pool (only where a replay is safe), else the static answer
    if (policy.mayReplay(request.method, failed.idempotencyKey, reason) && st.bodyKind !== STREAMED && useFallback(st, 'all_tries_failed', now)) {
      a.retryDelay = 0
      return RETRY
    }
    if (st.plan.failover.fallbackResponse !== undefined) {
      fallbackUsed(st, 'static', 'all_tries_failed', now)
      return FALLBACK
    }
    return PASS
  }

  /** Is there a target this request has not tried that could take a try now? */
  function hasUntried (st: ProxyState, now: number): boolean {
    for (const t of st.entry!.pool.targets) if (t.isEligible(now) && !st.tried.includes(t)) return true
    return false
  }

  function useFallback (st: ProxyState, cause: 'no_eligible_target' | 'all_tries_failed', now: number): boolean {
    const name = st.plan.failover.fallback
    if (st.inFallback || name === undefined) return false
    const entry = upstreams.get(name)
    if (entry === undefined) return false
    fallbackUsed(st, name, cause, now)
    st.inFallback = true
    st.entry = entry
    st.up = failovers.get(entry)
    st.up.budget.requestStarted()
    st.retries = 0
    if (st.slotHeld) { st.slotHeld = false; st.primaryUp!.budget.release() }
    return true
  }

  function fallbackUsed (st: ProxyState, fallback: string, cause: 'no_eligible_target' | 'all_tries_failed', now: number): void {
    foMetrics?.fallback(st.plan.upstreamName)
    notifications.emit({ type: 'fallback_used', timestamp: now, upstream: st.plan.upstreamName, fallback, cause })
  }

  function sendStatic (st: ProxyState): void {
    const reply = st.reply
    const fr = st.plan.failover.fallbackResponse as FallbackResponse
    if (reply.sent || st.done) return
    reply.code(fr.status ?? 503)
    reply.removeHeader('content-length')
    if (fr.headers !== undefined) reply.headers(fr.headers)
    if (fr.body === undefined) reply.send('')
    else if (typeof fr.body === 'string') reply.send(fr.body)
    else reply.type('application/json; charset=utf-8').send(JSON.stringify(fr.body))
  }

  /** Start the next try now or after `delay` ms. */
  function next (st: ProxyState, delay: number): void {
    if (delay <= 0) dispatch(st)
    else st.timer = setTimeout(retryLater, delay, st)
  }

  function retryLater (st: ProxyState): void {
    st.timer = undefined
    dispatch(st)
  }

  /** The next target for this request, or undefined; its breaker ticket is left in `pickedTicket`. */
  function pick (st: ProxyState, entry: UpstreamEntry): Target | undefined {
    const plan = st.plan
    const strategy = st.inFallback ? entry.strategy : (plan.strategy ?? entry.strategy)
    const request = st.reply.request
    pickCtx.now = Date.now()
    pickCtx.tried = st.tried
    pickCtx.hashKey = strategy === 'consistent_hash'
      ? ((st.inFallback ? undefined : plan.hashKey) ?? entry.hashKey)({ ip: request.ip, url: request.url, headers: request.headers })
      : undefined
    const balancer = entry.balancer(strategy)
    const breakers = st.up!.breakers
    let target: Target | undefined
    let ticket = -1
    for (;;) {
      target = balancer.pick(entry.pool, pickCtx)
      if (target === undefined || breakers === undefined) break
      ticket = breakers.acquire(target, pickCtx.now)
      if (ticket !== REFUSED) break
      // the breaker refused (trial slots taken, concurrency cap): not this target for this request
      st.tried.push(target)
    }
    pickCtx.tried = undefined
    pickCtx.hashKey = undefined
    pickedTicket = ticket
    return target
  }
  let pickedTicket = -1

  function dispatch (st: ProxyState): void {
    if (st.done) return
    const entry = st.entry!
    const target = pick(st, entry)
    if (target === undefined) { noTarget(st); return }
    const slot = st.slotHeld
    st.slotHeld = false
    startTry(st, target, pickedTicket, slot, false)
  }

  function noTarget (st: ProxyState): void {
    if (st.slotHeld) { st.slotHeld = false; st.up!.budget.release() }
    const now = Date.now()
    const first = st.current === undefined
    const cause = first ? 'no_eligible_target' : 'all_tries_failed'
    if (useFallback(st, cause, now)) { dispatch(st); return }
    if (st.plan.failover.fallbackResponse !== undefined) {
      fallbackUsed(st, 'static', cause, now)
      sendStatic(st)
      return
    }
    const entry = st.entry!
    const targets = entry.pool.targets
    let open = targets.length > 0
    for (const t of targets) if (t.circuit === 'closed') { open = false; break }
    const err = !first ? new GatewayError('RETRIES_EXHAUSTED', entry.name) : open ? new GatewayError('CIRCUIT_OPEN', entry.name) : new GatewayError('NO_HEALTHY_TARGET', entry.name)
    sendError(st.reply, err)
  }

  function startTry (st: ProxyState, target: Target, ticket: number, slot: boolean, hedge: boolean): void {
    const entry = st.entry!
    const policy = st.plan.failover.policy
    let headersTimeout = entry.timeouts.headers
    if (policy.perTryTimeout > 0 || policy.timeout > 0) {
      // per-try timeout, cut to what is left of the overall deadline (undici: 0 = none)
      const t = policy.tryTimeout(st.startedAt, Date.now())
      if (t < (headersTimeout > 0 ? headersTimeout : Infinity)) headersTimeout = Math.max(1, t)
    }
    target.onRequestStart()
    const attempt = new Attempt(target, headersTimeout, entry.timeouts.body, st)
    attempt.observers = entry.observers
    if (entry.observers.length > 0) attempt.notifyStart(Date.now())
    attempt.ticket = ticket
    attempt.slot = slot
    attempt.failover = st.up
    const first = st.current === undefined
    if (hedge) st.hedge = attempt
    else st.current = attempt
    st.tried.push(target)
    st.responding = attempt
    dispatcher.arm(attempt)
    try {
      st.reply.from(undefined, st.fromOpts as never)
    } catch (err) {
      // reply-from validates the URL synchronously (e.g. path traversal): the try never started.
      dispatcher.disarm()
      st.responding = undefined
      attempt.ended = true
      observer.onEnd(attempt)
      const status = (err as { statusCode?: number }).statusCode ?? 500
      st.reply.code(status).send({ statusCode: status, code: 'FHG_ERR_BAD_REQUEST', error: 'Bad Request', message: (err as Error).message })
      return
    }
    if (st.responding === attempt) st.responding = undefined
    if (first && st.plan.failover.hedgeDelay > 0 && st.bodyKind !== STREAMED && isIdempotent(st.reply.request.method)) {
      st.timer = setTimeout(fireHedge, st.plan.failover.hedgeDelay, st)
    }
  }

  function fireHedge (st: ProxyState): void {
    st.timer = undefined
    const cur = st.current
    if (st.done || st.reply.sent || st.hedge !== undefined || cur === undefined || cur.ended || cur.statusCode !== 0) return
    const up = st.up!
    if (!up.budget.tryAcquire()) return // counted as exhausted by the budget hook
    const target = pick(st, st.entry!)
    if (target === undefined) { up.budget.release(); return }
    foMetrics?.hedge(up.name)
    startTry(st, target, pickedTicket, true, true)
  }

  /** `winner` answers: the other try is aborted (on the next tick, outside reply-from's callback chain). */
  function settleRace (st: ProxyState, winner: Attempt, other: Attempt): void {
    st.current = winner
    st.hedge = undefined
    if (!other.ended) process.nextTick(abortAttempt, other)
  }

  function onDeadline (st: ProxyState): void {
    st.deadline = undefined
    if (st.done || st.reply.sent) {
      // headers went out: the deadline still ends the request
      const a = st.current
      if (a !== undefined && !a.ended) a.abort(deadlineError())
      return
    }
    if (st.timer !== undefined) { clearTimeout(st.timer); st.timer = undefined }
    const cur = st.current
    const hedge = st.hedge
    const live = (cur !== undefined && !cur.ended) || (hedge !== undefined && !hedge.ended)
    if (live) {
      // the try's error path answers 504 (decide() refuses past the deadline)
      if (hedge !== undefined && !hedge.ended) hedge.abort(deadlineError())
      if (cur !== undefined && !cur.ended) cur.abort(deadlineError())
      return
    }
    if (st.slotHeld) { st.slotHeld = false; st.up!.budget.release() }
    st.done = true
    sendError(st.reply, new GatewayError('UPSTREAM_TIMEOUT', st.entry?.name ?? st.plan.upstreamName))
  }

  function onClosed (st: ProxyState): void {
    st.done = true
    const a = st.current
    if (a !== undefined && !a.ended) a.abort(CLIENT_CLOSED)
    const h = st.hedge
    if (h !== undefined && !h.ended) h.abort(CLIENT_CLOSED)
    if (st.timer !== undefined) { clearTimeout(st.timer); st.timer = undefined }
    if (st.deadline !== undefined) { clearTimeout(st.deadline); st.deadline = undefined }
    if (st.slotHeld) { st.slotHeld = false; st.up?.budget.release() }
    st.primaryUp?.budget.requestEnded()
    if (st.inFallback) st.up?.budget.requestEnded()
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
    const st = new ProxyState(plan, this, onClosed, fromOptions)
    request[kProxy] = st
    this.raw.once('close', st.onClose)
    const entry = resolveEntry(plan)
    if (entry === undefined) return sendError(this, new GatewayError('UNKNOWN_UPSTREAM', plan.upstreamName))
    st.startedAt = Date.now()
    st.entry = entry
    const up = failovers.get(entry)
    st.up = up
    st.primaryUp = up
    up.budget.requestStarted()
    const policy = plan.failover.policy
    if (policy.timeout > 0) st.deadline = setTimeout(onDeadline, policy.timeout, st).unref()
    const body = request.body as { pipe?: unknown } | undefined | null
    if (body === undefined || body === null) {
      dispatch(st)
    } else if (typeof body.pipe !== 'function') {
      st.bodyKind = BUFFERED // parsed by a content-type parser: reply-from serialises it again on each try
      dispatch(st)
    } else {
      const len = Number(request.headers['content-length'])
      if (policy.maxRetries > 0 && len >= 0 && len <= policy.maxRetryBodySize) {
        // small declared body: hold it so a retry (or a connect-failure replay) can send it again
        bufferBody(body as unknown as import('node:stream').Readable, len).then((buf) => {
          if (buf === undefined || st.done) return
          st.bodyKind = BUFFERED
          st.bodySize = buf.length
          st.fromOpts = { ...fromOptions, body: buf, contentType: request.headers['content-type'] ?? 'application/octet-stream' }
          dispatch(st)
        }, () => {})
      } else {
        st.bodyKind = STREAMED
        dispatch(st)
      }
    }
    return this
  }

  fastify.decorate('loadBalancer', lb)
  fastify.decorateReply('proxy', proxy)

  fastify.addHook('onClose', async () => {
    failovers.dispose()
    await notifications.close()
    await agent.close().catch(() => agent.destroy())
  })
}

/** Drop a response the client will not get: read a small rest (keeps the connection), else destroy. */
function discard (stream: { destroy?: () => void, dump?: () => Promise<void> }): void {
  if (typeof stream.dump === 'function') stream.dump().catch(() => {})
  else stream.destroy?.()
}

function connectTimeoutFor (upstreams: UpstreamRegistry, origin: string): number {
  for (const e of upstreams) {
    for (const t of e.pool.targets) if (t.origin === origin) return e.timeouts.connect
  }
  return upstreams.defaultTimeouts.connect
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
