import type { Target, TargetStatus } from '../upstream/target.js'

/** Why a target's status changed. */
export type TransitionReason =
  | 'probe_passed' // healthyThreshold probes in a row passed (one, from `unknown`)
  | 'probe_failed' // unhealthyThreshold probes in a row failed (one, from `unknown`)
  | 'no_active_check' // no active probes configured: targets are taken as healthy
  | 'drain' // taken out of rotation on purpose
  | 'undrain' // back from draining to the last probe verdict
  | 'manual' // set through PoolHealth.setStatus by code

export type EjectReason = 'consecutive_failures' | 'trial_failed'
/** `last_eligible` / `ejection_limit`: put back because the pool needs it (see passive.ts). */
export type ReadmitReason = 'trial_passed' | 'active_probe' | 'last_eligible' | 'ejection_limit' | 'manual'

interface EventBase {
  upstream: string
  target: Target
  /** epoch-ms */
  at: number
}

/** A status change; emitted exactly once per change, never per request. */
export interface TransitionEvent extends EventBase {
  type: 'transition'
  from: TargetStatus
  to: TargetStatus
  reason: TransitionReason
  error?: string
}

/** Passive outlier ejection: the target gets no traffic until `until` (epoch-ms), then one trial request. */
export interface EjectionEvent extends EventBase {
  type: 'ejected'
  reason: EjectReason
  until: number
  /** The multiplier n used: ejection time = baseEjectionTime × n, capped. */
  ejectionCount: number
  error?: string
}

/** The single trial request after an ejection has been sent. */
export interface TrialEvent extends EventBase {
  type: 'trial'
}

export interface ReadmissionEvent extends EventBase {
  type: 'readmitted'
  reason: ReadmitReason
}

/**
 * Another node's hint (cluster-shared health) keeps the target out of traffic until `until`
 * (epoch-ms, this node's clock). Emitted once per applied hint; never re-broadcast.
 */
export interface HintedEvent extends EventBase {
  type: 'hinted'
  kind: HintKind
  /** Id of the node that ejected the target or opened its circuit. */
  from: string
  until: number
}

/** What another node saw: a passive ejection or an open circuit. */
export type HintKind = 'ejected' | 'circuit_open'

export interface RecoveryAttemptEvent extends EventBase {
  type: 'recovery_attempt'
  attempt: number
  /** epoch-ms the target turned unhealthy */
  unhealthySince: number
}

export interface RecoveryResultEvent extends EventBase {
  type: 'recovery_result'
  attempt: number
  ok: boolean
  durationMs: number
  error?: string
}

export type HealthEvent =
  | TransitionEvent | EjectionEvent | TrialEvent | ReadmissionEvent | HintedEvent
  | RecoveryAttemptEvent | RecoveryResultEvent
export type HealthEventType = HealthEvent['type']
export type HealthEventOf<T extends HealthEventType> = Extract<HealthEvent, { type: T }>

export type Unsubscribe = () => void

/**
 * A tiny typed event hub. A throwing listener is reported as a process warning and
 * never reaches the probe, the request or the other listeners.
 */
export class HealthEvents {
  // Copy-on-write so a listener that unsubscribes during emit does not skip its neighbour.
  private listeners: ReadonlyArray<(e: HealthEvent) => void> = []

  subscribe (fn: (e: HealthEvent) => void): Unsubscribe {
    this.listeners = [...this.listeners, fn]
    return () => { this.listeners = this.listeners.filter((l) => l !== fn) }
  }

  on<T extends HealthEventType> (type: T, fn: (e: HealthEventOf<T>) => void): Unsubscribe {
    return this.subscribe((e) => { if (e.type === type) fn(e as HealthEventOf<T>) })
  }

  emit (event: HealthEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(event)
      } catch (err) {
        process.emitWarning(err instanceof Error ? err : new Error(String(err)), { code: 'FHG_HEALTH_LISTENER' })
      }
    }
  }

  get size (): number { return this.listeners.length }
}
