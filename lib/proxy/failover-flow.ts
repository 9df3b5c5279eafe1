// The failover flow of a proxied request: after a failed try, retry on another target, go to the
// fallback upstream, answer the route's static fallback, or let the failure stand; hedging; the
// overall deadline. The data path (lib/proxy/engine.ts) starts tries; this module decides.
import { GatewayError } from '../errors.js'
import { IDEMPOTENCY_KEY_HEADER, isIdempotent, type FailedTry, type Notifications, type RetryReason } from '../failover/index.js'
import type { FailoverMetrics } from '../metrics/failover-metrics.js'
import type { UpstreamEntry, UpstreamRegistry } from '../upstream/registry.js'
import type { Target } from '../upstream/target.js'
import { PASS, RETRY, FALLBACK, type Attempt } from './attempt.js'
import type { FailoverRegistry, FallbackResponse } from './failover-registry.js'
import { sendError, sendStatic } from './respond.js'
import { STREAMED, type ProxyState } from './state.js'

/** A picked target and the circuit-breaker ticket its try must hand back. */
export interface Picked {
  readonly target: Target
  readonly ticket: number
}

/** What the flow asks of the data path. */
export interface TryRunner {
  /** Pick a target for the request and start a try, or answer when none is left. */
  dispatch (st: ProxyState): void
  /** The next target for the request with its breaker ticket (-1: no breaker), or undefined when none is left. */
  pick (st: ProxyState, entry: UpstreamEntry): Picked | undefined
  startTry (st: ProxyState, target: Target, ticket: number, slot: boolean, hedge: boolean): void
}

export interface FailoverFlowDeps {
  upstreams: UpstreamRegistry
  failovers: FailoverRegistry
  notifications: Notifications
  metrics: FailoverMetrics | undefined
}

type FallbackCause = 'no_eligible_target' | 'all_tries_failed'

// Reused retry question: RetryPolicy.decide is synchronous and keeps nothing.
const failed: FailedTry = { method: '', retries: 0, reason: 'other', idempotencyKey: false, bodyBuffered: true, bodySize: 0, headersSent: false, startedAt: 0, now: 0, retryAfter: undefined }
const HEDGE_LOST = new Error('hedged request lost the race')

function deadlineError (): Error {
  const err = new Error('request deadline passed')
  err.name = 'TimeoutError'
  return err
}

function abortAttempt (a: Attempt): void { a.abort(HEDGE_LOST) }

export class FailoverFlow {
  private readonly deps: FailoverFlowDeps
  private readonly runner: TryRunner
  /** Timer callbacks, made once (a timer passes the state as its argument). */
  private readonly retryLater: (st: ProxyState) => void
  private readonly fireHedgeCb: (st: ProxyState) => void
  private readonly onDeadlineCb: (st: ProxyState) => void

  constructor (deps: FailoverFlowDeps, runner: TryRunner) {
    this.deps = deps
    this.runner = runner
    this.retryLater = (st) => {
      st.timer = undefined
      this.runner.dispatch(st)
    }
    this.fireHedgeCb = (st) => { this.fireHedge(st) }
    this.onDeadlineCb = (st) => { this.onDeadline(st) }
  }

  /** A failed try (transport error class or status): retry, fall back, or let the failure stand. */
  afterFailure (st: ProxyState, a: Attempt, reason: RetryReason, retryAfter: string | string[] | undefined): typeof PASS | typeof RETRY | typeof FALLBACK {
    const policy = st.plan.failover.policy
    const reply = st.reply
    if (st.done || reply === undefined || reply.sent || !policy.retriesOn(reason)) return PASS
    const up = st.up!
    const request = reply.request
    const now = Date.now()
    failed.method = request.method
    failed.retries = st.retries
    failed.reason = reason
    failed.idempotencyKey = request.headers[IDEMPOTENCY_KEY_HEADER] !== undefined
    failed.bodyBuffered = st.bodyKind !== STREAMED
    failed.bodySize = st.bodySize
    failed.headersSent = reply.sent
    failed.startedAt = st.startedAt
    failed.now = now
    failed.retryAfter = retryAfter
    const d = policy.decide(failed, up.budget)
    failed.retryAfter = undefined
    const notifications = this.deps.notifications
    let why: string
    if (d.retry) {
      if (this.hasUntried(st, now)) {
        st.retries++
        st.slotHeld = true
        a.retryDelay = d.delayMs
        this.deps.metrics?.retry(up.name, reason)
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
    if (policy.mayReplay(request.method, failed.idempotencyKey, reason) && st.bodyKind !== STREAMED && this.useFallback(st, 'all_tries_failed', now)) {
      a.retryDelay = 0
      return RETRY
    }
    if (st.plan.failover.fallbackResponse !== undefined) {
      this.fallbackUsed(st, 'static', 'all_tries_failed', now)
      return FALLBACK
    }
    return PASS
  }

  /** Is there a target this request has not tried that could take a try now? */
  private hasUntried (st: ProxyState, now: number): boolean {
    for (const t of st.entry!.pool.targets) if (t.isEligible(now) && !st.hasTried(t)) return true
    return false
  }

  private useFallback (st: ProxyState, cause: FallbackCause, now: number): boolean {
    const name = st.plan.failover.fallback
    if (st.inFallback || name === undefined) return false
    const entry = this.deps.upstreams.get(name)
    if (entry === undefined) return false
    this.fallbackUsed(st, name, cause, now)
    st.inFallback = true
    st.entry = entry
    st.up = this.deps.failovers.get(entry)
    st.up.budget.requestStarted()
    st.retries = 0
    if (st.slotHeld) { st.slotHeld = false; st.primaryUp!.budget.release() }
    return true
  }

  private fallbackUsed (st: ProxyState, fallback: string, cause: FallbackCause, now: number): void {
    this.deps.metrics?.fallback(st.plan.upstreamName)
    this.deps.notifications.emit({ type: 'fallback_used', timestamp: now, upstream: st.plan.upstreamName, fallback, cause })
  }

  /** The route's static fallbackResponse answers. */
  answerStatic (st: ProxyState): void {
    const reply = st.reply
    if (reply === undefined || st.done) return
    sendStatic(reply, st.plan.failover.fallbackResponse as FallbackResponse)
  }

  /** Start the next try now or after `delay` ms. */
  next (st: ProxyState, delay: number): void {
    if (delay <= 0) this.runner.dispatch(st)
    else st.timer = setTimeout(this.retryLater, delay, st)
  }

  /** No target could take the try: the fallback upstream, the static answer, or 502/503. */
  noTarget (st: ProxyState): void {
    if (st.slotHeld) { st.slotHeld = false; st.up!.budget.release() }
    const now = Date.now()
    const first = st.current === undefined
    const cause = first ? 'no_eligible_target' : 'all_tries_failed'
    if (this.useFallback(st, cause, now)) { this.runner.dispatch(st); return }
    if (st.plan.failover.fallbackResponse !== undefined) {
      this.fallbackUsed(st, 'static', cause, now)
      this.answerStatic(st)
      return
    }
    const reply = st.reply
    if (reply === undefined) return
    const entry = st.entry!
    const targets = entry.pool.targets
    let open = targets.length > 0
    for (const t of targets) if (t.circuit === 'closed') { open = false; break }
    const err = !first ? new GatewayError('RETRIES_EXHAUSTED', entry.name) : open ? new GatewayError('CIRCUIT_OPEN', entry.name) : new GatewayError('NO_HEALTHY_TARGET', entry.name)
    sendError(reply, err)
  }

  /** After the first try started: arm the hedge timer when the route hedges and a replay is safe. */
  maybeHedge (st: ProxyState): void {
    const delay = st.plan.failover.hedgeDelay
    if (delay > 0 && st.bodyKind !== STREAMED && st.reply !== undefined && isIdempotent(st.reply.request.method)) {
      st.timer = setTimeout(this.fireHedgeCb, delay, st)
    }
  }

  private fireHedge (st: ProxyState): void {
    st.timer = undefined
    const cur = st.current
    if (st.done || st.reply === undefined || st.reply.sent || st.hedge !== undefined || cur === undefined || cur.ended || cur.statusCode !== 0) return
    const up = st.up!
    if (!up.budget.tryAcquire()) return // counted as exhausted by the budget hook
    const picked = this.runner.pick(st, st.entry!)
    if (picked === undefined) { up.budget.release(); return }
    this.deps.metrics?.hedge(up.name)
    this.runner.startTry(st, picked.target, picked.ticket, true, true)
  }

  /** `winner` answers: the other try is aborted (on the next tick, outside reply-from's callback chain). */
  settleRace (st: ProxyState, winner: Attempt, other: Attempt): void {
    st.current = winner
    st.hedge = undefined
    if (!other.ended) process.nextTick(abortAttempt, other)
  }

  armDeadline (st: ProxyState, timeout: number): void {
    st.deadline = setTimeout(this.onDeadlineCb, timeout, st).unref()
  }

  private onDeadline (st: ProxyState): void {
    st.deadline = undefined
    const reply = st.reply
    if (st.done || reply === undefined || reply.sent) {
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
    sendError(reply, new GatewayError('UPSTREAM_TIMEOUT', st.entry?.name ?? st.plan.upstreamName))
  }

  /** The client's response closed: stop the timers and give back budget slots. */
  closed (st: ProxyState): void {
    if (st.timer !== undefined) { clearTimeout(st.timer); st.timer = undefined }
    if (st.deadline !== undefined) { clearTimeout(st.deadline); st.deadline = undefined }
    if (st.slotHeld) { st.slotHeld = false; st.up?.budget.release() }
    st.primaryUp?.budget.requestEnded()
    if (st.inFallback) st.up?.budget.requestEnded()
  }
}
