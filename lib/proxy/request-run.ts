// One proxied request, from its first try to its answer: picks targets, starts tries (and a hedge), asks
// the pure failover decision (lib/failover/decide.ts) what to do after a failure and carries the action out:
// retry after a backoff, go to the fallback pool, answer the static fallback or an error. It owns its
// timers (backoff, hedge, overall deadline) and its retry-budget leases, and drops every link to the
// request when the client's response closes.
import type { Readable } from 'node:stream'
import type { PickContext } from '../balancers/types.js'
import { GatewayError, raiseError, type GatewayErrorName } from '../errors.js'
import { BudgetLease } from '../failover/budget-lease.js'
import { decide, hedges, type Action, type FallbackCause } from '../failover/decide.js'
import { IDEMPOTENCY_KEY_HEADER, REFUSED, type Notifications, type RetryReason } from '../failover/index.js'
import type { FailoverMetrics } from '../metrics/failover-metrics.js'
import type { UpstreamEntry, UpstreamRegistry } from '../upstream/registry.js'
import type { Target } from '../upstream/target.js'
import { Attempt, DROPPED, type Fate, type TryOwner } from './attempt.js'
import { bufferBody } from './body.js'
import { classifyError, upstreamError, upstreamErrorName } from './classify.js'
import type { Clock } from './clock.js'
import type { FailoverRegistry, FallbackResponse, UpstreamFailover } from './failover-registry.js'
import type { HeldBody, SinkOwner } from './direct.js'
import { deliver, discard, sendStatic, type UpstreamResponse } from './respond.js'
import type { TryTracker } from './try-handler.js'
import type { ProxyReply, RoutePlan } from './types.js'

/** What every run of one engine shares. */
export interface RunContext {
  readonly upstreams: UpstreamRegistry
  readonly failovers: FailoverRegistry
  readonly notifications: Notifications
  readonly metrics: FailoverMetrics | undefined
  readonly clock: Clock
  /** Ends a try's bookkeeping (a try that never reached undici: reply.from() threw). */
  readonly tracker: TryTracker
  /**
   * Send a try (lib/proxy/engine.ts): straight to undici (lib/proxy/direct.ts), or through reply-from for a body a
   * content-type parser made a value of; `held`: the body this run holds for retries. Throws as reply.from() does.
   */
  send (reply: ProxyReply, a: Attempt, held: HeldBody | undefined): void
}

/** A picked target and the circuit-breaker ticket its try must hand back (-1: no breaker). */
export interface Picked {
  readonly target: Target
  readonly ticket: number
}

/**
 * Where a run is. `idle`: no try in flight and none scheduled (before the first try, while a small body is
 * read, after an answer). `trying`: a try in flight, maybe a hedge beside it. `waiting`: a backoff before the
 * next try. `done`: the client's response closed, or the deadline answered; nothing more is started.
 */
type RunState =
  | { readonly kind: 'idle' }
  | { readonly kind: 'trying', current: Attempt, hedge: Attempt | undefined }
  | { readonly kind: 'waiting', readonly timer: unknown }
  | { readonly kind: 'done' }

const IDLE: RunState = { kind: 'idle' }
const DONE: RunState = { kind: 'done' }

// request body kinds: none (replayable), buffered (replayable), streamed (sent once)
const NO_BODY = 0
const BUFFERED = 1
const STREAMED = 2

// Abort reasons: never mutated, so one each serves every request (they only travel to undici and back).
const CLIENT_CLOSED = new Error('client closed the connection')
const HEDGE_LOST = new Error('hedged request lost the race')

function deadlineError (): Error {
  const err = new Error('request deadline passed')
  err.name = 'TimeoutError'
  return err
}

// timer callbacks get the run or the try as their argument: no closure per request
function expireTry (a: Attempt): void {
  const err = new Error('upstream headers timeout (per-try deadline)') as Error & { code: string }
  err.name = 'HeadersTimeoutError'
  err.code = 'UND_ERR_HEADERS_TIMEOUT'
  a.expire(err)
}
function retryLater (run: RequestRun): void { run.backoffOver() }
function fireHedge (run: RequestRun): void { run.hedgeDue() }
function deadlinePassed (run: RequestRun): void { run.deadlinePassed() }
function abortLoser (a: Attempt): void { a.abort(HEDGE_LOST) }

export class RequestRun implements TryOwner, SinkOwner {
  readonly plan: RoutePlan
  private readonly ctx: RunContext
  private reply: ProxyReply | undefined
  private state: RunState = IDLE
  /** The upstream being tried (the primary, or the fallback pool) and its failover state. */
  private entry: UpstreamEntry
  private up: UpstreamFailover
  /** This request, counted active on its primary upstream's budget, and on the fallback's once there. */
  private readonly primaryLease: BudgetLease
  private fallbackLease: BudgetLease | undefined = undefined
  /** The retry-budget slot a retry decision took, handed to the next try (released if none starts). */
  private slot: BudgetLease | undefined = undefined
  private retries = 0
  /** Tries started (hedges included). */
  private tries = 0
  /** Targets tried so far (a retry never picks them again): the first without an array (the common case). */
  private firstTried: Target | undefined = undefined
  private tried: Target[] | undefined = undefined
  /** Epoch ms when proxying started: origin of the overall deadline. */
  private readonly startedAt: number
  private bodyKind = NO_BODY
  private bodySize = 0
  /** A small request body read whole, sent again on a retry. */
  private held: HeldBody | undefined = undefined
  private deadline: unknown = undefined
  private hedgeTimer: unknown = undefined
  /** The try whose response reply-from is handling in this synchronous chain (headers in → rewriteHeaders → onResponse). */
  private answering: Attempt | undefined = undefined
  /** The error of the last try failure acted on (tryFailed): reply-from reports it again, to be ignored. */
  private lastFailure: Error | undefined = undefined
  /** The target of the try that answers (or last failed): the access log's. */
  private lastTarget: Target | undefined = undefined

  constructor (ctx: RunContext, plan: RoutePlan, reply: ProxyReply, entry: UpstreamEntry) {
    this.ctx = ctx
    this.plan = plan
    this.reply = reply
    this.startedAt = ctx.clock.now()
    this.entry = entry
    this.up = ctx.failovers.get(entry)
    this.primaryLease = BudgetLease.enter(this.up.budget)
  }

  /** Start: arm the deadline, hold a small body if a retry may need it, and send the first try. */
  start (): void {
    const policy = this.plan.failover.policy
    const clock = this.ctx.clock
    if (policy.timeout > 0) {
      this.deadline = clock.setTimeout(deadlinePassed, policy.timeout, this)
      ;(this.deadline as { unref?: () => void }).unref?.()
    }
    const request = this.reply!.request
    const body = request.body as { pipe?: unknown } | undefined | null
    if (body === undefined || body === null) {
      this.dispatch()
    } else if (typeof body.pipe !== 'function') {
      this.bodyKind = BUFFERED // parsed by a content-type parser: reply-from serialises it again on each try
      this.dispatch()
    } else {
      const len = Number(request.headers['content-length'])
      if (policy.maxRetries > 0 && len >= 0 && len <= policy.maxRetryBodySize) {
        // small declared body: hold it so a retry (or a connect-failure replay) can send it again
        bufferBody(body as unknown as Readable, len).then((buf) => {
          if (buf === undefined || this.state.kind === 'done') return
          this.bodyKind = BUFFERED
          this.bodySize = buf.length
          this.held = { buf, contentType: (request.headers['content-type'] as string | undefined) ?? 'application/octet-stream' }
          this.dispatch()
        }, () => {})
      } else {
        this.bodyKind = STREAMED
        this.dispatch()
      }
    }
  }

  // --- what the access log reads ---

  /** The upstream tried last (the fallback's once in it). */
  get upstreamName (): string { return this.entry.name }
  get targetId (): string | undefined { return this.lastTarget?.id }
  /** Tries started, hedges included. */
  get tryCount (): number { return this.tries }

  // --- reply-from's callbacks (lib/proxy/engine.ts routes them here) ---

  /** Do the response headers reply-from is copying belong to a response the client gets? */
  passes (): boolean {
    const a = this.answering
    return a === undefined || a.fate.kind === 'pass'
  }

  /** reply-from's onResponse: the client gets the response, or it is dropped and the try's fate carried out. */
  respond (reply: ProxyReply, res: UpstreamResponse): void {
    const a = this.answering
    if (a === undefined || a.fate.kind === 'pass') {
      deliver(reply, res, this.plan.upstreamName, this.plan.metrics)
      return
    }
    discard(res.stream)
    this.carryOut(a.fate)
  }

  /** reply-from's onError. A try's failure before headers reaches tryFailed (which acts on it) before or after this: ignored here. */
  replyFromError (error: Error): void {
    const a = this.answering
    if (a !== undefined) {
      // inside a response's own chain (reply-from refused its status): that try failed
      this.tryFailure(a, a.error ?? error)
      return
    }
    const cause = (error as { cause?: unknown }).cause ?? error
    if (cause === this.lastFailure || this.isTryError(cause)) return
    if (this.state.kind === 'done' || this.reply === undefined) return
    this.raise(this.reply, upstreamError(classifyError(error), this.plan.upstreamName, error))
  }

  // --- TryOwner: told by the try handler ---

  tryHeaders (a: Attempt): void {
    this.answering = a
    const s = this.state
    if (s.kind === 'done' || a.aborted) { a.fate = DROPPED; return }
    const other = s.kind !== 'trying' ? undefined : a === s.current ? s.hedge : s.current
    if (!this.plan.failover.policy.retriesStatus(a.statusCode)) {
      this.stopHedgeTimer()
      if (other !== undefined && s.kind === 'trying') {
        // `a` wins the race: the other try is aborted on the next tick, outside reply-from's callback chain
        this.promote(s, a)
        if (!other.ended) process.nextTick(abortLoser, other)
      }
      return
    }
    if (other !== undefined && !other.ended && s.kind === 'trying') {
      // a failed try while another still runs: drop it, the other answers
      a.fate = DROPPED
      this.promote(s, other)
      return
    }
    a.fate = this.failed(a, a.statusCode, a.retryAfter(), undefined)
  }

  tryHeadersDone (a: Attempt): void {
    if (this.answering === a) this.answering = undefined
  }

  tryFailed (a: Attempt): void {
    this.lastFailure = a.error
    this.tryFailure(a, a.error as Error)
  }

  // --- timers ---

  /** @internal the backoff passed: the next try. */
  backoffOver (): void {
    if (this.state.kind !== 'waiting') return
    this.state = IDLE
    this.dispatch()
  }

  /** @internal the hedge delay passed: one more try on another target if the first still has no headers. */
  hedgeDue (): void {
    this.hedgeTimer = undefined
    const s = this.state
    const reply = this.reply
    if (s.kind !== 'trying' || reply === undefined || reply.sent || s.hedge !== undefined || s.current.ended || s.current.statusCode !== 0) return
    const lease = BudgetLease.take(this.up.budget)
    if (lease === undefined) return // counted as exhausted by the budget hook
    const picked = this.pick()
    if (picked === undefined) { lease.release(); return }
    this.ctx.metrics?.hedge(this.up.name)
    this.startTry(picked, lease, true)
  }

  /** @internal the overall deadline (failover.timeout) passed. */
  deadlinePassed (): void {
    this.deadline = undefined
    const s = this.state
    const reply = this.reply
    if (s.kind === 'done' || reply === undefined || reply.sent) {
      // headers went out: the deadline still ends the request
      if (s.kind === 'trying' && !s.current.ended) s.current.abort(deadlineError())
      return
    }
    if (s.kind === 'trying') {
      const { current, hedge } = s
      if (!current.ended || (hedge !== undefined && !hedge.ended)) {
        // the try's error path answers 504 (decide() refuses past the deadline)
        if (hedge !== undefined && !hedge.ended) hedge.abort(deadlineError())
        if (!current.ended) current.abort(deadlineError())
        return
      }
    } else if (s.kind === 'waiting') {
      this.ctx.clock.clearTimeout(s.timer)
    }
    this.releaseSlot()
    this.state = DONE
    this.raise(reply, new GatewayError('UPSTREAM_TIMEOUT', this.entry.name))
  }

  /** The client's response closed (sent, or the client left): end the tries, give back every lease, unlink. */
  closed (statusCode: number): void {
    const s = this.state
    this.state = DONE
    const clock = this.ctx.clock
    if (s.kind === 'trying') {
      if (!s.current.ended) s.current.abort(CLIENT_CLOSED)
      if (s.hedge !== undefined && !s.hedge.ended) s.hedge.abort(CLIENT_CLOSED)
      // unlink: nothing of this request stays reachable from its tries
      s.current.owner = undefined
      if (s.hedge !== undefined) s.hedge.owner = undefined
    } else if (s.kind === 'waiting') {
      clock.clearTimeout(s.timer)
    }
    this.stopHedgeTimer()
    if (this.deadline !== undefined) { clock.clearTimeout(this.deadline); this.deadline = undefined }
    this.releaseSlot()
    this.primaryLease.release()
    this.fallbackLease?.release()
    this.plan.metrics?.record(statusCode, this.reply?.elapsedTime ?? 0)
    this.reply = undefined
    this.answering = undefined
  }

  // --- trying ---

  private dispatch (): void {
    if (this.state.kind === 'done' || this.reply === undefined) return
    const picked = this.pick()
    if (picked === undefined) { this.noTarget(); return }
    const slot = this.slot
    this.slot = undefined
    this.startTry(picked, slot, false)
  }

  /** The next target for this request with its breaker ticket, or undefined when none is left. */
  pick (): Picked | undefined {
    const plan = this.plan
    const entry = this.entry
    const inFallback = this.fallbackLease !== undefined
    const strategy = inFallback ? entry.strategy : (plan.strategy ?? entry.strategy)
    const ctx: PickContext = { now: this.ctx.clock.now(), tried: this.triedList(), hashKey: undefined }
    if (strategy === 'consistent_hash') {
      const request = this.reply!.request
      ctx.hashKey = ((inFallback ? undefined : plan.hashKey) ?? entry.hashKey)({ ip: request.ip, url: request.url, headers: request.headers })
    }
    const balancer = entry.balancer(strategy)
    const breakers = this.up.breakers
    for (;;) {
      const target = balancer.pick(entry.pool, ctx)
      if (target === undefined) return undefined
      if (breakers === undefined) return { target, ticket: -1 }
      const ticket = breakers.acquire(target, ctx.now)
      if (ticket !== REFUSED) return { target, ticket }
      // the breaker refused (trial slots taken, concurrency cap): not this target for this request
      this.markTried(target)
      ctx.tried = this.triedList()
    }
  }

  private startTry (picked: Picked, lease: BudgetLease | undefined, hedge: boolean): void {
    const reply = this.reply!
    const entry = this.entry
    const plan = this.plan
    const policy = plan.failover.policy
    const clock = this.ctx.clock
    const { target, ticket } = picked
    // the route's own timeouts (routes[].timeouts) win over the upstream's
    let headersTimeout = plan.timeouts?.headers ?? entry.timeouts.headers
    const timed = policy.perTryTimeout > 0 || policy.timeout > 0
    if (timed) {
      // per-try timeout, cut to what is left of the overall deadline (undici: 0 = none)
      const t = policy.tryTimeout(this.startedAt, clock.now())
      if (t < (headersTimeout > 0 ? headersTimeout : Infinity)) headersTimeout = Math.max(1, t)
    }
    target.onRequestStart()
    const a = new Attempt(target, headersTimeout, plan.timeouts?.body ?? entry.timeouts.body, this)
    // a precise per-try deadline (undici's own headers timeout ticks every ~0.5 s; it stays as the backstop)
    if (timed) a.deadline = clock.setTimeout(expireTry, headersTimeout, a)
    if (entry.observers.length > 0) {
      a.observers = entry.observers
      a.notifyStart(clock.now())
    }
    const client = reply.request.raw
    const url = client?.url ?? reply.request.url
    // the request target as routed (stripPrefix / rewritePrefix cut it without re-parsing it)
    a.path = plan.upstreamPath === undefined ? url : plan.upstreamPath(url)
    a.client = client as Attempt['client']
    a.response = reply.raw
    a.ticket = ticket
    a.lease = lease
    a.failover = this.up
    const first = this.tries === 0
    const s = this.state
    if (hedge && s.kind === 'trying') s.hedge = a
    else {
      this.state = { kind: 'trying', current: a, hedge: undefined }
      this.lastTarget = target
    }
    this.markTried(target)
    this.tries++
    try {
      this.ctx.send(reply, a, this.held)
    } catch (err) {
      // reply-from throws synchronously on a bad source or origin: the try never started
      a.ended = true
      this.ctx.tracker.ended(a)
      const statusCode = (err as { statusCode?: number }).statusCode
      this.raise(reply, new GatewayError('BAD_REQUEST', (err as Error).message, { cause: err, statusCode }))
      return
    }
    if (first && hedges(plan.failover.hedgeDelay, reply.request.method, this.bodyKind !== STREAMED)) {
      this.hedgeTimer = clock.setTimeout(fireHedge, plan.failover.hedgeDelay, this)
    }
  }

  // --- failures ---

  /** A try failed before its headers (transport error, or reply-from refused the response). */
  private tryFailure (a: Attempt, cause: Error): void {
    const s = this.state
    if (s.kind !== 'trying' || (a !== s.current && a !== s.hedge)) return // a lost hedge or a stale try
    const reply = this.reply
    if (reply === undefined || reply.sent || reply.raw.destroyed) return
    const other = a === s.current ? s.hedge : s.current
    if (other !== undefined && !other.ended) {
      this.promote(s, other)
      return
    }
    if (a.clientFault) {
      // the client's doing: no failover, and a 400 if it is still there to read one
      this.raise(reply, new GatewayError('BAD_REQUEST', cause.message, { cause }))
      return
    }
    if (a.headersTooLarge) {
      // the target answered, with a head too large to read: another target would send the same; not its failure
      this.raise(reply, new GatewayError('UPSTREAM_HEADERS_TOO_LARGE', this.entry.name, { cause }))
      return
    }
    const kind = classifyError(cause)
    const action = this.failed(a, kind, undefined, upstreamErrorName(kind, cause))
    if (action.kind === 'error') this.raise(reply, new GatewayError(action.code, this.entry.name, { cause }))
    else this.carryOut(action)
  }

  /** Decide after a failed try and do the bookkeeping the action needs now (events, budget, pool switch). */
  private failed (a: Attempt, reason: RetryReason, retryAfter: string | undefined, error: GatewayErrorName | undefined): Action {
    const reply = this.reply!
    const request = reply.request
    const failover = this.plan.failover
    const up = this.up
    const now = this.ctx.clock.now()
    const action = decide({
      kind: 'failed',
      policy: failover.policy,
      error,
      method: request.method,
      retries: this.retries,
      reason,
      idempotencyKey: request.headers[IDEMPOTENCY_KEY_HEADER] !== undefined,
      bodyBuffered: this.bodyKind !== STREAMED,
      bodySize: this.bodySize,
      headersSent: reply.sent,
      startedAt: this.startedAt,
      now,
      retryAfter,
      budgetRoom: up.budget.hasRoom(),
      untriedTarget: this.hasUntried(now),
      fallbackPool: this.fallbackEntry() !== undefined,
      staticFallback: failover.fallbackResponse !== undefined,
    })
    const notifications = this.ctx.notifications
    if (action.kind === 'retry') {
      this.retries++
      this.slot = BudgetLease.take(up.budget) // decide saw room: this cannot fail
      this.ctx.metrics?.retry(up.name, reason)
      notifications.emit({ type: 'retry', timestamp: now, upstream: up.name, target: a.target.id, attempt: this.retries, reason, delayMs: action.delay, method: request.method })
      return action
    }
    if (action.why === 'budget') up.budget.refuse()
    if (action.why !== undefined) {
      notifications.emit({ type: 'retries_exhausted', timestamp: now, upstream: up.name, tries: this.retries + 1, reason, why: action.why, method: request.method })
    }
    if (action.kind === 'fallbackPool') this.enterFallback(action.cause, now)
    else if (action.kind === 'staticFallback') this.fallbackUsed('static', action.cause, now)
    return action
  }

  /** What follows a dropped response or a failure, once reply-from is done with it. */
  private carryOut (fate: Fate): void {
    switch (fate.kind) {
      case 'retry':
        if (fate.delay <= 0) this.dispatch()
        else this.state = { kind: 'waiting', timer: this.ctx.clock.setTimeout(retryLater, fate.delay, this) }
        return
      case 'fallbackPool': this.dispatch(); return
      case 'staticFallback': this.answerStatic(); return
      default: // pass, drop: nothing more; error: answered by the caller
    }
  }

  /** No target could take the try: the fallback upstream, the static answer, or 502/503. */
  private noTarget (): void {
    this.releaseSlot()
    const now = this.ctx.clock.now()
    const targets = this.entry.pool.targets
    let allOpen = targets.length > 0
    for (const t of targets) if (t.circuit === 'closed') { allOpen = false; break }
    const action = decide({
      kind: 'noTarget',
      firstTry: this.tries === 0,
      allCircuitsOpen: allOpen,
      fallbackPool: this.fallbackEntry() !== undefined,
      staticFallback: this.plan.failover.fallbackResponse !== undefined,
    })
    if (action.kind === 'fallbackPool') {
      this.enterFallback(action.cause, now)
      this.dispatch()
    } else if (action.kind === 'staticFallback') {
      this.fallbackUsed('static', action.cause, now)
      this.answerStatic()
    } else if (action.kind === 'error' && this.reply !== undefined) {
      this.raise(this.reply, new GatewayError(action.code, this.entry.name))
    }
  }

  /** The fallback upstream this request may still go to, if any. */
  private fallbackEntry (): UpstreamEntry | undefined {
    const name = this.plan.failover.fallback
    if (this.fallbackLease !== undefined || name === undefined) return undefined
    return this.ctx.upstreams.get(name)
  }

  private enterFallback (cause: FallbackCause, now: number): void {
    const entry = this.fallbackEntry()!
    this.fallbackUsed(this.plan.failover.fallback!, cause, now)
    this.entry = entry
    this.up = this.ctx.failovers.get(entry)
    this.fallbackLease = BudgetLease.enter(this.up.budget)
    this.retries = 0
    this.releaseSlot()
  }

  private fallbackUsed (fallback: string, cause: FallbackCause, now: number): void {
    this.ctx.metrics?.fallback(this.plan.upstreamName)
    this.ctx.notifications.emit({ type: 'fallback_used', timestamp: now, upstream: this.plan.upstreamName, fallback, cause })
  }

  private answerStatic (): void {
    const reply = this.reply
    if (reply === undefined || this.state.kind === 'done') return
    sendStatic(reply, this.plan.failover.fallbackResponse as FallbackResponse)
  }

  /**
   * Answer with a gateway error, raised through Fastify: the route's error handler (an app's setErrorHandler, else
   * Fastify's default, which writes the bytes the proxy wrote by hand before) answers it. The run is over first,
   * its bookkeeping done (failover events and budget were counted by `failed`): no try, timer or lease of it is
   * left to answer a second time while an async error handler runs, and a handler that throws cannot skip it.
   */
  private raise (reply: ProxyReply, err: GatewayError): void {
    const s = this.state
    this.state = DONE
    if (s.kind === 'trying') {
      // a try still running (a hedge refused by reply-from while the first one waits): not followed any more
      if (!s.current.ended) s.current.abort(err)
      if (s.hedge !== undefined && !s.hedge.ended) s.hedge.abort(err)
    } else if (s.kind === 'waiting') {
      this.ctx.clock.clearTimeout(s.timer)
    }
    this.stopHedgeTimer()
    if (this.deadline !== undefined) { this.ctx.clock.clearTimeout(this.deadline); this.deadline = undefined }
    this.releaseSlot()
    raiseError(reply, err)
  }

  // --- small helpers ---

  /** `a` is the try that answers now; the other one is no longer followed. */
  private promote (s: { current: Attempt, hedge: Attempt | undefined }, a: Attempt): void {
    s.current = a
    s.hedge = undefined
    this.lastTarget = a.target
  }

  private releaseSlot (): void {
    this.slot?.release()
    this.slot = undefined
  }

  private stopHedgeTimer (): void {
    if (this.hedgeTimer === undefined) return
    this.ctx.clock.clearTimeout(this.hedgeTimer)
    this.hedgeTimer = undefined
  }

  /** Is `err` the error of a try in flight (reply-from reports a try's failure too)? */
  private isTryError (err: unknown): boolean {
    const s = this.state
    return s.kind === 'trying' && err !== undefined && (s.current.error === err || s.hedge?.error === err)
  }

  /** Is there a target this request has not tried that could take a try now? */
  private hasUntried (now: number): boolean {
    for (const t of this.entry.pool.targets) if (t.isEligible(now) && !this.hasTried(t)) return true
    return false
  }

  private markTried (t: Target): void {
    if (this.tried !== undefined) this.tried.push(t)
    else if (this.firstTried === undefined) this.firstTried = t
    else this.tried = [this.firstTried, t]
  }

  /** Targets tried so far, as the balancers' `tried` (undefined: none). */
  private triedList (): readonly Target[] | undefined {
    if (this.tried !== undefined) return this.tried
    if (this.firstTried === undefined) return undefined
    this.tried = [this.firstTried]
    return this.tried
  }

  private hasTried (t: Target): boolean {
    return this.tried !== undefined ? this.tried.includes(t) : this.firstTried === t
  }
}
