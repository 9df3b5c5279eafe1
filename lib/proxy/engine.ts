// The proxy data path: per request, pick a target, start a try through @fastify/reply-from over
// the TrackingDispatcher, and route the response (or error) by the try's verdict. Failures go to
// the failover flow (lib/proxy/failover-flow.ts). Works on structural request/reply types only.
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { PickContext } from '../balancers/types.js'
import { GatewayError, httpReason } from '../errors.js'
import { breakerOutcome, REFUSED, type Notifications } from '../failover/index.js'
import type { FailoverMetrics } from '../metrics/failover-metrics.js'
import type { TrustFn } from '../trust-proxy.js'
import type { UpstreamEntry, UpstreamRegistry } from '../upstream/registry.js'
import type { Target } from '../upstream/target.js'
import { Attempt, PASS, DROP, RETRY, FALLBACK } from './attempt.js'
import { bufferBody } from './body.js'
import { classifyError, isClientFault, upstreamError } from './classify.js'
import { TrackingDispatcher, bodyRead, type AttemptObserver } from './dispatcher.js'
import type { FailoverRegistry } from './failover-registry.js'
import { FailoverFlow, type Picked, type TryRunner } from './failover-flow.js'
import { setForwarded, stripHopByHop, withoutHopByHop, type HeaderBag } from './headers.js'
import { discard, sendError, takeWhole, type UpstreamBody } from './respond.js'
import { ProxyState, BUFFERED, STREAMED, type ProxyReply, type ProxyRequest, type RoutePlan } from './state.js'

/** Where a request's ProxyState hangs: on the request (reply-from's callbacks get it) and on the raw response. */
export const kProxy = Symbol('fastify-ha-gateway.proxy')

type Stated = { [kProxy]?: ProxyState | null }
type FromRequest = ProxyRequest & Stated & { headers: Record<string, string | string[] | undefined> }
type FromReply = ProxyReply & { request: FromRequest }
type UpstreamResponse = { stream: NodeJS.ReadableStream & UpstreamBody & { destroy?: () => void, dump?: () => Promise<void> } }

export interface ProxyEngineDeps {
  upstreams: UpstreamRegistry
  failovers: FailoverRegistry
  notifications: Notifications
  failoverMetrics: FailoverMetrics | undefined
  /** The dispatcher tries go through (the plugin's undici Agent). */
  agent: Dispatcher
  /** Which peers are trusted proxies (node.trustProxy compiled): their forwarding headers are kept. */
  trust?: TrustFn
  /** Told when each try ends (after every other bookkeeping). */
  onAttempt?: (a: Attempt) => void
}

// Reused pick context: balancers must not keep it, and a pick is synchronous.
const pickCtx: PickContext = { now: 0, tried: undefined, hashKey: undefined }
const CLIENT_CLOSED = new Error('client closed the connection')
const EMPTY_HEADERS: HeaderBag = Object.freeze({}) as HeaderBag

function expireTry (a: Attempt): void {
  const err = new Error('upstream headers timeout (per-try deadline)') as Error & { code: string }
  err.name = 'HeadersTimeoutError'
  err.code = 'UND_ERR_HEADERS_TIMEOUT'
  a.expire(err)
}

export class ProxyEngine implements TryRunner, AttemptObserver {
  readonly dispatcher: TrackingDispatcher
  /** The reply-from options of every try: shared callbacks, no closures per request. */
  readonly fromOptions: object
  readonly flow: FailoverFlow
  private readonly onAttempt: ((a: Attempt) => void) | undefined
  private readonly onRawClose: (this: ServerResponse & Stated) => void

  constructor (private readonly deps: ProxyEngineDeps) {
    this.onAttempt = deps.onAttempt
    this.dispatcher = new TrackingDispatcher(deps.agent, this)
    this.flow = new FailoverFlow({ upstreams: deps.upstreams, failovers: deps.failovers, notifications: deps.notifications, metrics: deps.failoverMetrics }, this)
    const engine = this
    const trust = deps.trust
    const NO_SOCKET = {}
    this.onRawClose = function (this: ServerResponse & Stated) {
      const st = this[kProxy]
      this[kProxy] = null
      if (st != null) engine.closed(st, this)
    }
    this.fromOptions = {
      getUpstream (req: FromRequest): string {
        // startTry sets `responding` to the try being dispatched right before reply.from()
        return req[kProxy]!.responding!.target.origin
      },
      rewriteRequestHeaders (req: FromRequest, headers: HeaderBag): HeaderBag {
        stripHopByHop(headers)
        // Node answered the client's `Expect: 100-continue` already (and undici refuses to send it)
        if (headers.expect !== undefined) headers.expect = undefined
        const host = (req.headers.host ?? req.headers[':authority']) as string | undefined // HTTP/2: :authority
        if (host !== undefined && req[kProxy]?.plan.preserveHost === true) headers.host = host
        return setForwarded(headers, req.raw?.socket ?? NO_SOCKET, host, trust)
      },
      rewriteHeaders (headers: HeaderBag, req: FromRequest): HeaderBag {
        const a = req[kProxy]?.responding
        // a response the proxy drops (retry, lost hedge) must leave nothing on the reply
        if (a !== undefined && a.verdict !== PASS) return EMPTY_HEADERS
        return withoutHopByHop(headers)
      },
      onResponse: (req: FromRequest, reply: FromReply, res: UpstreamResponse): void => { this.onResponse(req, reply, res) },
      onError: (reply: FromReply, { error }: { error: Error }): void => { this.onError(reply, error) },
      retryDelay (): null { return null },
    }
  }

  /** Proxy the request of `reply` to `entry` on `plan` (the plugin resolved both). */
  proxy (reply: FromReply, plan: RoutePlan, entry: UpstreamEntry): void {
    const request = reply.request
    const raw = reply.raw as ServerResponse & Stated
    if (raw[kProxy] != null || reply.sent) {
      // a second reply.proxy() on one request (an app bug): the first one answers; a second state would send the
      // request twice and never give back its retry-budget slot
      reply.log.warn({ upstream: plan.upstreamName }, 'reply.proxy() called again on a request already proxied or answered: ignored')
      return
    }
    const st = new ProxyState(plan, reply, this.fromOptions)
    request[kProxy] = st
    raw[kProxy] = st
    raw.on('close', this.onRawClose)
    st.startedAt = Date.now()
    st.entry = entry
    const up = this.deps.failovers.get(entry)
    st.up = up
    st.primaryUp = up
    up.budget.requestStarted()
    const policy = plan.failover.policy
    if (policy.timeout > 0) this.flow.armDeadline(st, policy.timeout)
    const body = request.body as { pipe?: unknown } | undefined | null
    if (body === undefined || body === null) {
      this.dispatch(st)
    } else if (typeof body.pipe !== 'function') {
      st.bodyKind = BUFFERED // parsed by a content-type parser: reply-from serialises it again on each try
      this.dispatch(st)
    } else {
      const len = Number(request.headers['content-length'])
      if (policy.maxRetries > 0 && len >= 0 && len <= policy.maxRetryBodySize) {
        // small declared body: hold it so a retry (or a connect-failure replay) can send it again
        bufferBody(body as unknown as Readable, len).then((buf) => {
          if (buf === undefined || st.done) return
          st.bodyKind = BUFFERED
          st.bodySize = buf.length
          st.fromOpts = { ...this.fromOptions, body: buf, contentType: request.headers['content-type'] ?? 'application/octet-stream' }
          this.dispatch(st)
        }, () => {})
      } else {
        st.bodyKind = STREAMED
        this.dispatch(st)
      }
    }
  }

  // --- AttemptObserver: called by the TrackingDispatcher ---

  onHeaders (a: Attempt): void {
    a.target.recordLatency(a.headersMs, Date.now())
    const st = a.owner as ProxyState | undefined
    if (st === undefined) return
    st.responding = a
    if (st.done || a.aborted) { a.verdict = DROP; return }
    const other = a === st.current ? st.hedge : st.current
    if (!st.plan.failover.policy.retriesStatus(a.statusCode)) {
      if (st.timer !== undefined && st.retries === 0) { clearTimeout(st.timer); st.timer = undefined }
      if (other !== undefined) this.flow.settleRace(st, a, other)
      return
    }
    if (other !== undefined && !other.ended) {
      // a failed try while another still runs: drop it, the other answers
      a.verdict = DROP
      st.current = other
      st.hedge = undefined
      return
    }
    a.verdict = this.flow.afterFailure(st, a, a.statusCode, a.retryAfter)
  }

  onEnd (a: Attempt): void {
    if (a.deadline !== undefined) { clearTimeout(a.deadline); a.deadline = undefined }
    if (a.error !== undefined && !a.aborted && a.statusCode === 0 && isClientFault(a.error, a.client)) a.clientFault = true
    a.target.onRequestEnd(-1, 0)
    if (a.observers.length > 0) a.notifyEnd(Date.now())
    const f = a.failover
    if (f !== undefined) {
      if (a.ticket !== -1) f.breakers?.record(a.target, a.ticket, a.clientFault ? 'ignore' : breakerOutcome(a.error === undefined ? a.statusCode : undefined, a.error))
      if (a.slot) { a.slot = false; f.budget.release() }
    }
    if (a.error !== undefined && a.statusCode === 0) {
      const st = a.owner as ProxyState | undefined
      if (st !== undefined) st.responding = a
    }
    this.onAttempt?.(a)
    a.release()
  }

  // --- reply-from callbacks ---

  private onResponse (req: FromRequest, reply: FromReply, res: UpstreamResponse): void {
    const st = req[kProxy]
    const a = st?.responding
    if (st == null || a === undefined || a.verdict === PASS) {
      if (st != null) st.responding = undefined
      const body = res.stream
      if (takeWhole(body, reply)) {
        body.bytes!().then((u8) => {
          bodyRead(body)
          if (!reply.sent && !reply.raw.destroyed) reply.send(Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength))
        }, (err: Error) => { this.bodyFailed(reply, err, st?.plan.upstreamName ?? '') })
        return
      }
      reply.send(body)
      return
    }
    st.responding = undefined
    discard(res.stream)
    if (a.verdict === RETRY) this.flow.next(st, a.retryDelay)
    else if (a.verdict === FALLBACK) this.flow.answerStatic(st)
  }

  /** The upstream failed in the middle of a body taken whole: nothing reached the client yet, so it gets a 502, not half a body. */
  private bodyFailed (reply: FromReply, error: Error, upstream: string): void {
    if (reply.sent || reply.raw.destroyed) return
    for (const name of Object.keys(reply.getHeaders())) reply.removeHeader(name) // the upstream's, for the body that never came
    sendError(reply, upstreamError(classifyError(error), upstream, error))
  }

  private onError (reply: FromReply, error: Error): void {
    const st = reply.request[kProxy]
    const a = st?.responding
    if (st == null || a === undefined) {
      if (st != null && st.done) return
      sendError(reply, upstreamError(classifyError(error), st?.plan.upstreamName ?? '', error))
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
    if (a.clientFault) {
      // the client's doing: no failover, and a 400 if it is still there to read one
      sendError(reply, new GatewayError('BAD_REQUEST', cause.message, { cause }))
      return
    }
    const kind = classifyError(cause)
    const v = this.flow.afterFailure(st, a, kind, undefined)
    if (v === RETRY) this.flow.next(st, a.retryDelay)
    else if (v === FALLBACK) this.flow.answerStatic(st)
    else sendError(reply, upstreamError(kind, st.entry?.name ?? st.plan.upstreamName, cause))
  }

  // --- TryRunner ---

  pick (st: ProxyState, entry: UpstreamEntry): Picked | undefined {
    const plan = st.plan
    const strategy = st.inFallback ? entry.strategy : (plan.strategy ?? entry.strategy)
    pickCtx.now = Date.now()
    pickCtx.tried = st.triedList()
    if (strategy === 'consistent_hash') {
      const request = st.reply!.request
      pickCtx.hashKey = ((st.inFallback ? undefined : plan.hashKey) ?? entry.hashKey)({ ip: request.ip, url: request.url, headers: request.headers })
    }
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
      st.markTried(target)
      pickCtx.tried = st.triedList()
    }
    pickCtx.tried = undefined
    pickCtx.hashKey = undefined
    return target === undefined ? undefined : { target, ticket }
  }

  dispatch (st: ProxyState): void {
    if (st.done || st.reply === undefined) return
    const picked = this.pick(st, st.entry!)
    if (picked === undefined) { this.flow.noTarget(st); return }
    const slot = st.slotHeld
    st.slotHeld = false
    this.startTry(st, picked.target, picked.ticket, slot, false)
  }

  startTry (st: ProxyState, target: Target, ticket: number, slot: boolean, hedge: boolean): void {
    const reply = st.reply!
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
    // a precise per-try deadline (undici's own headers timeout ticks every ~0.5 s; it stays as the backstop)
    if (policy.perTryTimeout > 0 || policy.timeout > 0) attempt.deadline = setTimeout(expireTry, headersTimeout, attempt)
    if (entry.observers.length > 0) {
      attempt.observers = entry.observers
      attempt.notifyStart(Date.now())
    }
    const client = reply.request.raw
    const url = client?.url ?? reply.request.url
    // the request target as routed (stripPrefix / rewritePrefix cut it without re-parsing it)
    attempt.path = st.plan.upstreamPath === undefined ? url : st.plan.upstreamPath(url)
    attempt.client = client as Attempt['client']
    attempt.ticket = ticket
    attempt.slot = slot
    attempt.failover = st.up
    const first = st.current === undefined
    if (hedge) st.hedge = attempt
    else st.current = attempt
    st.markTried(target)
    st.tries++
    st.responding = attempt
    this.dispatcher.arm(attempt)
    try {
      // a constant source: reply-from's URL (parsed once per origin, cached) only names the origin; the
      // dispatcher sends attempt.path, the client's request target as routed, never re-parsed
      reply.from('/', st.fromOpts as never)
    } catch (err) {
      // reply-from throws synchronously on a bad source or origin: the try never started.
      this.dispatcher.disarm()
      st.responding = undefined
      attempt.ended = true
      this.onEnd(attempt)
      const e = new GatewayError('BAD_REQUEST', (err as Error).message)
      const status = (err as { statusCode?: number }).statusCode ?? e.statusCode
      reply.code(status)
      reply.send({ ...e.toJSON(), statusCode: status, error: httpReason(status) })
      return
    }
    if (st.responding === attempt) st.responding = undefined
    if (first) this.flow.maybeHedge(st)
  }

  /** The client's response closed (sent, or the client left): end the request's tries and unlink its state. */
  private closed (st: ProxyState, raw: ServerResponse): void {
    st.done = true
    const a = st.current
    if (a !== undefined && !a.ended) a.abort(CLIENT_CLOSED)
    const h = st.hedge
    if (h !== undefined && !h.ended) h.abort(CLIENT_CLOSED)
    this.flow.closed(st)
    const m = st.plan.metrics
    if (m !== undefined) m.record(raw.writableFinished ? raw.statusCode : 499, st.reply?.elapsedTime ?? 0)
    // unlink: nothing of this request stays reachable from its state or its tries
    if (a !== undefined) a.owner = undefined
    if (h !== undefined) h.owner = undefined
    st.current = undefined
    st.hedge = undefined
    st.responding = undefined
    st.reply = undefined
  }
}

/** A GatewayError answer for a reply (for the plugin's own early errors). */
export function answerError (reply: ProxyReply, err: GatewayError): void { sendError(reply, err) }
