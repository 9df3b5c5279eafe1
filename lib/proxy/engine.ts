// The proxy data path, shared by every request of one plugin: the try dispatcher over the plugin's undici
// Agent, how a try is sent (straight to undici through lib/proxy/direct.ts; through reply-from only for a body a
// parser made a value of), the end-of-try bookkeeping, and one RequestRun per proxied request
// (lib/proxy/request-run.ts), which does the rest. Works on structural request/reply types only.
import type { ServerResponse } from 'node:http'
import type { Dispatcher } from 'undici'
import { raiseError } from '../errors.js'
import { breakerOutcome, type Notifications } from '../failover/index.js'
import type { FailoverMetrics } from '../metrics/failover-metrics.js'
import type { TrustFn } from '../trust-proxy.js'
import type { UpstreamEntry, UpstreamRegistry } from '../upstream/registry.js'
import type { Attempt } from './attempt.js'
import { classifyError, isClientFault, isHeadersOverflow, upstreamError } from './classify.js'
import { realClock, type Clock } from './clock.js'
import { TryDispatcher } from './dispatcher.js'
import type { FailoverRegistry } from './failover-registry.js'
import { setForwarded, stripHopByHop, withoutHopByHop, type HeaderBag } from './headers.js'
import { RequestRun, type RunContext } from './request-run.js'
import { requestHeaders, ResponseSink, type HeldBody } from './direct.js'
import { deliver, type UpstreamResponse } from './respond.js'
import type { TryTracker } from './try-handler.js'
import type { ProxyReply, ProxyRequest, RoutePlan } from './types.js'

/** Where a request's RequestRun hangs: on the request (reply-from's callbacks get it) and on the raw response. */
export const kProxy = Symbol('fastify-ha-gateway.proxy')

type Stated = { [kProxy]?: RequestRun | null }
type FromRequest = ProxyRequest & Stated & { headers: Record<string, string | string[] | undefined> }
type FromReply = ProxyReply & { request: FromRequest }

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
  /** Time and timers (tests pass a fake one). */
  clock?: Clock
}

const EMPTY_HEADERS: HeaderBag = Object.freeze({}) as HeaderBag

export class ProxyEngine implements TryTracker {
  readonly dispatcher: TryDispatcher
  /** The reply-from options of every try: shared callbacks, no closures per request. */
  readonly fromOptions: object
  private readonly ctx: RunContext
  private readonly onAttempt: ((a: Attempt) => void) | undefined
  private readonly clock: Clock
  private readonly onRawClose: (this: ServerResponse & Stated) => void

  constructor (deps: ProxyEngineDeps) {
    this.onAttempt = deps.onAttempt
    this.clock = deps.clock ?? realClock
    const dispatcher = this.dispatcher = new TryDispatcher(deps.agent, this)
    const trust = deps.trust
    const NO_SOCKET = {}
    this.onRawClose = function (this: ServerResponse & Stated) {
      const run = this[kProxy]
      this[kProxy] = null
      if (run != null) run.closed(this.writableFinished ? this.statusCode : 499)
    }
    const fromOptions = this.fromOptions = {
      getUpstream (): string {
        // reply-from builds its URL from this origin; the dispatcher sends to the armed try's target anyway
        return dispatcher.armedOrigin()
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
        // a response the proxy drops (retry, lost hedge) must leave nothing on the reply
        if (req[kProxy]?.passes() === false) return EMPTY_HEADERS
        return withoutHopByHop(headers)
      },
      onResponse (req: FromRequest, reply: FromReply, res: UpstreamResponse): void {
        const run = req[kProxy]
        if (run != null) run.respond(reply, res)
        else deliver(reply, res, '')
      },
      onError (reply: FromReply, { error }: { error: Error }): void {
        const run = reply.request[kProxy]
        if (run != null) run.replyFromError(error)
        else raiseError(reply, upstreamError(classifyError(error), '', error))
      },
      retryDelay (): null { return null },
    }
    this.ctx = {
      upstreams: deps.upstreams,
      failovers: deps.failovers,
      notifications: deps.notifications,
      metrics: deps.failoverMetrics,
      clock: this.clock,
      tracker: this,
      send (reply: ProxyReply, a: Attempt, held: HeldBody | undefined): void {
        const request = reply.request as FromRequest
        const body = (held === undefined ? request.body : held.buf) as { pipe?: unknown } | null | undefined
        if (held === undefined && body != null && typeof body.pipe !== 'function') {
          // a value a content-type parser made of the body: reply-from serialises it. The dispatcher takes the
          // armed try on reply.from()'s synchronous dispatch; a constant source: reply-from's URL only names the
          // origin, the dispatcher sends a.path, the client's request target as routed, never re-parsed
          dispatcher.arm(a)
          try {
            reply.from('/', fromOptions as never)
          } finally {
            dispatcher.disarm()
          }
          return
        }
        // the direct path (lib/proxy/direct.ts): no body, the client's stream, or the held buffer
        const raw = request.raw
        const run = request[kProxy]!
        const origin = a.target.origin
        const headers = requestHeaders(request.headers, raw, origin, run.plan.preserveHost === true, trust, held)
        dispatcher.arm(a)
        dispatcher.dispatch({ origin, path: a.path ?? raw?.url ?? '/', method: request.method as Dispatcher.HttpMethod, headers: headers as Record<string, string>, body: (body ?? null) as Buffer | null }, new ResponseSink(reply, run))
      },
    }
  }

  /** Proxy the request of `reply` to `entry` on `plan` (the plugin resolved both). */
  proxy (reply: FromReply, plan: RoutePlan, entry: UpstreamEntry): void {
    const raw = reply.raw as ServerResponse & Stated
    if (raw[kProxy] != null || reply.sent) {
      // a second reply.proxy() on one request (an app bug): the first one answers; a second run would send the
      // request twice and never give back its retry-budget lease
      reply.log.warn({ upstream: plan.upstreamName }, 'reply.proxy() called again on a request already proxied or answered: ignored')
      return
    }
    const run = new RequestRun(this.ctx, plan, reply, entry)
    reply.request[kProxy] = run
    raw[kProxy] = run
    raw.on('close', this.onRawClose)
    run.start()
  }

  /** TryTracker: a try ended (last byte in, failed, or never sent): in-flight count, observers, breaker, budget slot. */
  ended (a: Attempt): void {
    if (a.deadline !== undefined) { this.clock.clearTimeout(a.deadline); a.deadline = undefined }
    if (a.error !== undefined && !a.aborted && a.statusCode === 0) {
      if (isClientFault(a.error, a.client)) a.clientFault = true
      else if (isHeadersOverflow(a.error)) a.headersTooLarge = true
    }
    a.target.onRequestEnd(-1, 0)
    if (a.observers.length > 0) a.notifyEnd(this.clock.now())
    const f = a.failover
    if (f !== undefined && a.ticket !== -1) {
      f.breakers?.record(a.target, a.ticket, a.clientFault || a.headersTooLarge ? 'ignore' : breakerOutcome(a.error === undefined ? a.statusCode : undefined, a.error))
    }
    a.lease?.release()
    this.onAttempt?.(a)
    a.release()
  }
}
