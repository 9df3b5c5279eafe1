// Typed failover events: plain JSON-safe objects, so a webhook can post them as they are.

/** Why a try failed: a classified transport error or the upstream's HTTP status. */
export type RetryReason = 'connect' | 'reset' | 'timeout' | 'other' | number

/** What tripped a breaker. */
export type TripCause = 'error_ratio' | 'consecutive_failures' | 'half_open_failure'

interface EventBase {
  /** Epoch-ms. */
  timestamp: number
  upstream: string
}

/** A failed try is about to be retried on another target. */
export interface RetryEvent extends EventBase {
  type: 'retry'
  /** Id of the target whose try failed. */
  target: string
  /** 1 for the first retry. */
  attempt: number
  reason: RetryReason
  delayMs: number
  method: string
}

/** The request gets its last failure as the answer: every allowed try failed or a retry was refused. */
export interface RetriesExhaustedEvent extends EventBase {
  type: 'retries_exhausted'
  /** Tries made, the first one included. */
  tries: number
  reason: RetryReason
  /** Why no further retry: see NoRetryReason in retry-policy.ts. */
  why: string
  method: string
}

/** A fallback answered instead of the primary upstream. */
export interface FallbackUsedEvent extends EventBase {
  type: 'fallback_used'
  /** The fallback upstream's name, or 'static' for a route's static response. */
  fallback: string
  cause: 'no_eligible_target' | 'all_tries_failed'
}

export interface CircuitOpenedEvent extends EventBase {
  type: 'circuit_opened'
  target: string
  cause: TripCause
  /** How long this trip keeps the circuit open (ms). */
  openMs: number
  /** Consecutive trips without a close in between, this one included. */
  trips: number
}

export interface CircuitHalfOpenedEvent extends EventBase {
  type: 'circuit_half_opened'
  target: string
}

export interface CircuitClosedEvent extends EventBase {
  type: 'circuit_closed'
  target: string
}

export type CircuitEvent = CircuitOpenedEvent | CircuitHalfOpenedEvent | CircuitClosedEvent

export type FailoverEvent =
  | RetryEvent
  | RetriesExhaustedEvent
  | FallbackUsedEvent
  | CircuitEvent

export type FailoverEventType = FailoverEvent['type']

export const FAILOVER_EVENT_TYPES: readonly FailoverEventType[] = [
  'retry', 'retries_exhausted', 'fallback_used', 'circuit_opened', 'circuit_half_opened', 'circuit_closed',
]
