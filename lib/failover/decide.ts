// What the proxy does after a failed try, or when no target can take one: a pure decision over a snapshot
// of the request, in the style of RetryPolicy.decide (which it builds on). No timers, no sends, no budget
// taken: lib/proxy/request-run.ts carries the action out.
import type { GatewayErrorName } from '../errors.js'
import { isIdempotent, type FailedTry, type NoRetryReason, type RetryPolicy } from './retry-policy.js'

/** Why no further retry (the retries_exhausted event's `why`): RetryPolicy's reasons, or no untried target left. */
export type ExhaustedWhy = NoRetryReason | 'no_target'

/** Why a fallback (pool or static) answers: no target could take the first try, or every try failed. */
export type FallbackCause = 'no_eligible_target' | 'all_tries_failed'

export type Action =
  /** The failure stands: the upstream's response goes to the client as it is. */
  | { readonly kind: 'pass', readonly why?: ExhaustedWhy }
  /** Try another target of the same pool after `delay` ms (the caller takes a budget slot for it). */
  | { readonly kind: 'retry', readonly delay: number }
  /** Go on in the route's fallback upstream (its retries start from zero). */
  | { readonly kind: 'fallbackPool', readonly cause: FallbackCause, readonly why?: ExhaustedWhy }
  /** The route's static fallbackResponse answers. */
  | { readonly kind: 'staticFallback', readonly cause: FallbackCause, readonly why?: ExhaustedWhy }
  /** The gateway answers this error. */
  | { readonly kind: 'error', readonly code: GatewayErrorName, readonly why?: ExhaustedWhy }

/** A try failed: a transport error (reason is its class) or a status retryOn names. */
export interface TryFailure extends FailedTry {
  readonly kind: 'failed'
  readonly policy: RetryPolicy
  /** The error the client gets if the failure stands; undefined for a status (the response passes). */
  readonly error: GatewayErrorName | undefined
  /** The upstream's retry budget has a slot free (RetryBudget.hasRoom()). */
  readonly budgetRoom: boolean
  /** The pool has an eligible target this request has not tried. */
  readonly untriedTarget: boolean
  /** A fallback upstream is configured, exists, and the request is not in it already. */
  readonly fallbackPool: boolean
  /** The route has a static fallbackResponse. */
  readonly staticFallback: boolean
}

/** No target of the pool could take a try (none eligible, or every breaker refused). */
export interface NoTarget {
  readonly kind: 'noTarget'
  /** No try was started yet for this request. */
  readonly firstTry: boolean
  /** Every target's circuit is open (and there is at least one). */
  readonly allCircuitsOpen: boolean
  readonly fallbackPool: boolean
  readonly staticFallback: boolean
}

export type Snapshot = TryFailure | NoTarget

// the answers that carry nothing: shared, so deciding allocates only for a retry or a fallback
const PASS: Action = { kind: 'pass' }

function stands (s: TryFailure, why: ExhaustedWhy | undefined): Action {
  if (s.error !== undefined) return { kind: 'error', code: s.error, why }
  return why === undefined ? PASS : { kind: 'pass', why }
}

/**
 * The action for a snapshot. For a failed try: not a retryOn failure (or headers already sent): it stands,
 * silently. Else RetryPolicy.decide; a retry it allows needs a budget slot and an untried target. When
 * retries are exhausted (`why` set: the caller emits retries_exhausted): past the deadline it stands;
 * else the fallback pool where a replay is safe, else the static fallback, else it stands.
 */
export function decide (s: Snapshot): Action {
  if (s.kind === 'noTarget') {
    const cause: FallbackCause = s.firstTry ? 'no_eligible_target' : 'all_tries_failed'
    if (s.fallbackPool) return { kind: 'fallbackPool', cause }
    if (s.staticFallback) return { kind: 'staticFallback', cause }
    return { kind: 'error', code: !s.firstTry ? 'RETRIES_EXHAUSTED' : s.allCircuitsOpen ? 'CIRCUIT_OPEN' : 'NO_HEALTHY_TARGET' }
  }
  const policy = s.policy
  if (s.headersSent || !policy.retriesOn(s.reason)) return stands(s, undefined)
  const d = policy.decide(s)
  let why: ExhaustedWhy
  if (d.retry) {
    // the budget is checked last, as RetryPolicy does: only a retry refused for budget alone counts as exhausted
    if (!s.budgetRoom) why = 'budget'
    else if (s.untriedTarget) return { kind: 'retry', delay: d.delayMs }
    else why = 'no_target'
  } else {
    why = d.why
  }
  if (why === 'headers_sent' || why === 'deadline') return stands(s, why)
  // every allowed try failed: the fallback pool (only where a replay is safe), else the static answer
  if (s.fallbackPool && s.bodyBuffered && policy.mayReplay(s.method, s.idempotencyKey, s.reason)) return { kind: 'fallbackPool', cause: 'all_tries_failed', why }
  if (s.staticFallback) return { kind: 'staticFallback', cause: 'all_tries_failed', why }
  return stands(s, why)
}

/** Hedge this request (one more try after `delay` ms without response headers)? Idempotent methods with a replayable body only. */
export function hedges (delay: number, method: string, bodyReplayable: boolean): boolean {
  return delay > 0 && bodyReplayable && isIdempotent(method)
}
