import { GatewayError } from '../errors.js'
import type { PoolChange } from '../upstream/pool.js'
import type { Target } from '../upstream/target.js'
import type { EjectReason } from './events.js'
import { statusTable, type StatusList } from './probe.js'
import type { HealthRecord, PoolHealth } from './state.js'

/** `healthCheck.passive`, durations already in ms. */
export interface PassiveOptions {
  /** Failures in a row that eject a target. */
  consecutiveFailures: number
  /** Response statuses (codes or [min, max] ranges) that count as failures; default 502, 503, 504. */
  failureStatuses?: StatusList
  baseEjectionTime: number
  /** Cap of baseEjectionTime × n; default max(300 s, baseEjectionTime) as Envoy. */
  maxEjectionTime?: number
  /** Most of the pool (in %) that may be out of rotation for any reason; default 50. */
  maxEjectionPercent: number
  /** Code only: how long the trial request may take before another trial is allowed; default 10 s. */
  trialTimeout?: number
}

/** One finished proxied request as the proxy saw it. */
export interface RequestResult {
  ok: boolean
  /** Response status, when a response came. */
  status?: number
  /** Connect error, reset, timeout... (an error code or message). */
  error?: string
}

export const DEFAULT_FAILURE_STATUSES: StatusList = [502, 503, 504]
const DEFAULT_TRIAL_TIMEOUT = 10_000

/**
 * Outlier ejection from live traffic.
 *
 * - Ejection: `consecutiveFailures` failures in a row set target.ejectedUntil = now +
 *   min(baseEjectionTime × n, maxEjectionTime), n = the record's ejectionCount after
 *   incrementing. n restarts at 1 when the last ejection ended more than
 *   maxEjectionTime ago (a target that behaved for that long starts over).
 * - Limits: an ejection must leave at least one other eligible target, and the share of
 *   targets out of rotation for ANY reason (ejected, unhealthy, draining, open circuit)
 *   must stay <= maxEjectionPercent: ejection exists to shed a bad target, not capacity.
 * - Re-admission through one trial: once ejectedUntil has passed the target is eligible
 *   again; the proxy calls onRequestStart() right after a pick, and the first request
 *   to an expired target becomes the trial: ejectedUntil moves to now + trialTimeout so
 *   no other request picks it. The trial's result re-admits (ejectedUntil = 0, failure
 *   streak reset) or re-ejects with n + 1. Without onRequestStart the first result after
 *   expiry still decides, only more than one request may be in flight by then.
 *   A passing active probe re-admits at once (active.ts).
 * - If a change leaves the pool with no eligible target, the ejected target whose
 *   ejection ends first is re-admitted (reason `last_eligible`).
 */
export class PassiveDetector {
  readonly health: PoolHealth
  private readonly threshold: number
  private readonly failureStatuses: Uint8Array
  private readonly base: number
  private readonly max: number
  private readonly maxPercent: number
  private readonly trialTimeout: number
  private busy = false
  private started = false
  private readonly onPoolChange = (c: PoolChange): void => {
    if (this.busy || c.type === 'added') return
    const now = Date.now()
    if (c.type !== 'removed' && c.target.isEligible(now)) return // O(1): something is still eligible
    this.rescueIfNoneEligible(now)
  }

  constructor (health: PoolHealth, options: PassiveOptions) {
    if (!(options.consecutiveFailures >= 1)) throw invalid('consecutiveFailures must be >= 1')
    if (!(options.baseEjectionTime > 0)) throw invalid('baseEjectionTime must be > 0 ms')
    this.health = health
    this.threshold = Math.floor(options.consecutiveFailures)
    this.failureStatuses = statusTable(options.failureStatuses ?? DEFAULT_FAILURE_STATUSES, 'passive.failureStatuses')
    this.base = options.baseEjectionTime
    this.max = Math.max(options.maxEjectionTime ?? Math.max(300_000, this.base), this.base)
    this.maxPercent = Math.min(100, Math.max(0, options.maxEjectionPercent ?? 50))
    this.trialTimeout = options.trialTimeout ?? DEFAULT_TRIAL_TIMEOUT
  }

  start (): void {
    if (this.started) return
    this.started = true
    this.health.pool.on('change', this.onPoolChange)
  }

  close (): void {
    this.started = false
    this.health.pool.off('change', this.onPoolChange)
  }

  /** Hot path, right after a pick: turns the first request to an expired ejection into its trial. */
  onRequestStart (target: Target, now: number): void {
    const until = target.ejectedUntil
    if (until === 0 || now < until) return
    this.guarded(() => this.health.startTrial(target, now + this.trialTimeout, now))
  }

  isFailure (result: RequestResult): boolean {
    if (result.error !== undefined) return true
    if (result.status !== undefined) return result.status >= 0 && result.status < 600 && this.failureStatuses[result.status] === 1
    return !result.ok
  }

  onResult (target: Target, result: RequestResult, now = Date.now()): void {
    const r = this.health.record(target)
    const failed = this.isFailure(result)
    if (r.ejectedUntil !== 0) {
      // Still ejected and no trial: the answer of a request sent before the ejection.
      if (r.trialSince === 0 && now < r.ejectedUntil) return
      if (!failed) this.guarded(() => this.health.readmit(target, 'trial_passed', now))
      else {
        this.health.noteError(r, describe(result), now)
        this.eject(target, r, 'trial_failed', describe(result), now)
      }
      return
    }
    if (!failed) {
      r.passiveFailures = 0
      return
    }
    r.passiveFailures++
    const error = describe(result)
    this.health.noteError(r, error, now)
    if (r.passiveFailures >= this.threshold) this.eject(target, r, 'consecutive_failures', error, now)
  }

  /** Ejection time for multiplier n (ms): baseEjectionTime × n, capped at maxEjectionTime. */
  ejectionTime (n: number): number {
    return Math.min(this.base * n, this.max)
  }

  private eject (target: Target, r: HealthRecord, reason: EjectReason, error: string, now: number): void {
    const refusal = this.refusal(target, now)
    if (refusal !== undefined) {
      // A refused re-ejection after a failed trial puts the target back: it is needed.
      if (reason === 'trial_failed') this.guarded(() => this.health.readmit(target, refusal, now))
      return
    }
    if (reason === 'consecutive_failures' && r.readmittedAt !== 0 && now - r.readmittedAt >= this.max) {
      r.ejectionCount = 0
    }
    r.ejectionCount++
    r.passiveFailures = 0
    const until = now + this.ejectionTime(r.ejectionCount)
    this.guarded(() => this.health.eject(target, until, reason, error, now))
  }

  /** Why `target` may not be ejected now, or undefined when it may. O(pool size), ejections (and hints) only. */
  refusal (target: Target, now: number): 'last_eligible' | 'ejection_limit' | undefined {
    const targets = this.health.pool.targets
    let others = 0
    let out = 0
    for (const t of targets) {
      if (t === target) continue
      if (t.isEligible(now)) others++
      else out++
    }
    if (others === 0) return 'last_eligible'
    // (out + 1) / size <= maxEjectionPercent / 100, in integers.
    if ((out + 1) * 100 > this.maxPercent * targets.length) return 'ejection_limit'
    return undefined
  }

  private rescueIfNoneEligible (now: number): void {
    let soonest: Target | undefined
    for (const t of this.health.pool.targets) {
      if (t.isEligible(now)) return
      if (t.ejectedUntil !== 0 && t.status !== 'unhealthy' && t.status !== 'draining' &&
        (soonest === undefined || t.ejectedUntil < soonest.ejectedUntil)) soonest = t
    }
    const t = soonest
    if (t !== undefined) this.guarded(() => this.health.readmit(t, 'last_eligible', now))
  }

  /** Our own pool.touch() calls must not re-enter the pool listener. */
  private guarded (fn: () => void): void {
    const was = this.busy
    this.busy = true
    try { fn() } finally { this.busy = was }
  }
}

function describe (r: RequestResult): string {
  return r.error ?? (r.status !== undefined ? `status ${r.status}` : 'request failed')
}

function invalid (msg: string): GatewayError {
  return new GatewayError('INVALID_CONFIG', `healthCheck.passive.${msg}`)
}
