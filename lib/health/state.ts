import type { Target, TargetStatus } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import type { EjectReason, HealthEvents, HintKind, ReadmitReason, TransitionReason } from './events.js'

/** What active probes have concluded, apart from draining. */
export type Verdict = 'unknown' | 'healthy' | 'unhealthy'

/**
 * Per-target health record: the one source of truth. Status and ejection are
 * mirrored onto the Target (what balancers read) only through PoolHealth methods;
 * the detectors may update the counters directly.
 */
export interface HealthRecord {
  status: TargetStatus
  reason: TransitionReason | 'start'
  /** epoch-ms of the last status change (or of record creation) */
  since: number
  lastError: string | undefined
  lastErrorAt: number
  /** Active probes in a row (hysteresis counters). */
  consecutiveSuccesses: number
  consecutiveFailures: number
  /** Live-traffic failures in a row (passive detection). */
  passiveFailures: number
  /** Current ejection multiplier n (ejection time = base × n); decays, see passive.ts. */
  ejectionCount: number
  /** Lifetime ejections, for the status route and metrics. */
  totalEjections: number
  /** Mirror of target.ejectedUntil; 0 = in service. */
  ejectedUntil: number
  /** epoch-ms the last ejection ended (re-admission), 0 = never. */
  readmittedAt: number
  /** epoch-ms the trial request started, 0 = no trial in flight. */
  trialSince: number
  /** The status active probes decided, kept while draining so undrain can restore it. */
  verdict: Verdict
  /** Another node's hint (cluster-shared health): out until hintUntil (epoch-ms, local clock); 0 = none. */
  hintUntil: number
  /** epoch-ms the hint arrived: only evidence gathered after it (a probe started later) overrides it. */
  hintAt: number
  hintFrom: string | undefined
  hintKind: HintKind | undefined
  /** Present when the pool's health started: its first unknown -> healthy gets no slow start. */
  readonly boot: boolean
}

export interface Thresholds {
  healthy: number
  unhealthy: number
}

export interface PoolHealthOptions {
  /** Slow-start ramp in ms after a target turns healthy; 0 = off. */
  slowStart?: number
}

/**
 * The status state machine of one upstream pool. Every change is applied to the
 * Target, announced with `pool.touch()` and emitted once as an event.
 */
export class PoolHealth {
  readonly pool: UpstreamPool
  readonly events: HealthEvents
  slowStart: number
  private readonly records = new WeakMap<Target, HealthRecord>()
  private readonly bootTargets: WeakSet<Target>

  constructor (pool: UpstreamPool, events: HealthEvents, options: PoolHealthOptions = {}) {
    this.pool = pool
    this.events = events
    this.slowStart = options.slowStart ?? 0
    this.bootTargets = new WeakSet(pool.targets)
  }

  get upstream (): string { return this.pool.name }

  record (target: Target): HealthRecord {
    let r = this.records.get(target)
    if (r === undefined) {
      r = {
        status: target.status,
        reason: 'start',
        since: Date.now(),
        lastError: undefined,
        lastErrorAt: 0,
        consecutiveSuccesses: 0,
        consecutiveFailures: 0,
        passiveFailures: 0,
        ejectionCount: 0,
        totalEjections: 0,
        ejectedUntil: target.ejectedUntil,
        readmittedAt: 0,
        trialSince: 0,
        verdict: target.status === 'healthy' || target.status === 'unhealthy' ? target.status : 'unknown',
        hintUntil: 0,
        hintAt: 0,
        hintFrom: undefined,
        hintKind: undefined,
        boot: this.bootTargets.has(target),
      }
      this.records.set(target, r)
    }
    return r
  }

  /**
   * Feed one active probe result. Hysteresis: `healthy` needs `t.healthy` passes in a
   * row and `unhealthy` needs `t.unhealthy` failures in a row; from `unknown` the first
   * result decides (a new target should not wait several intervals for a verdict).
   */
  recordProbe (target: Target, ok: boolean, error: string | undefined, t: Thresholds, now = Date.now()): void {
    const r = this.record(target)
    if (ok) {
      r.consecutiveSuccesses++
      r.consecutiveFailures = 0
      if (r.verdict !== 'healthy' && (r.verdict === 'unknown' || r.consecutiveSuccesses >= t.healthy)) {
        this.setVerdict(target, 'healthy', 'probe_passed', undefined, now)
      }
    } else {
      r.consecutiveFailures++
      r.consecutiveSuccesses = 0
      this.noteError(r, error, now)
      if (r.verdict !== 'unhealthy' && (r.verdict === 'unknown' || r.consecutiveFailures >= t.unhealthy)) {
        this.setVerdict(target, 'unhealthy', 'probe_failed', error, now)
      }
    }
  }

  /** Set the probe verdict; the status follows unless the target is draining. */
  setVerdict (target: Target, verdict: Verdict, reason: TransitionReason, error?: string, now = Date.now()): void {
    const r = this.record(target)
    r.verdict = verdict
    if (verdict === 'unhealthy') this.noteError(r, error, now)
    if (r.status !== 'draining') this.setStatus(target, verdict, reason, error, now)
  }

  /** The single place a status changes: Target fields, slow start, pool.touch, one event. */
  setStatus (target: Target, to: TargetStatus, reason: TransitionReason, error?: string, now = Date.now()): void {
    const r = this.record(target)
    const from = r.status
    if (from === to && target.status === to) return
    r.status = to
    r.reason = reason
    r.since = now
    // the target announces it to its pool (balancers rebuild once), before the event
    target.setStatus(to, to === 'healthy' && this.slowStart > 0 && !(from === 'unknown' && r.boot) ? { from: now, until: now + this.slowStart } : undefined)
    this.events.emit({ type: 'transition', upstream: this.upstream, target, from, to, reason, error, at: now })
  }

  drain (target: Target, now = Date.now()): void {
    this.setStatus(target, 'draining', 'drain', undefined, now)
  }

  undrain (target: Target, now = Date.now()): void {
    const r = this.record(target)
    if (r.status === 'draining') this.setStatus(target, r.verdict, 'undrain', undefined, now)
  }

  /** Take a target out of traffic until `until` (epoch-ms). The caller decided n and the time. */
  eject (target: Target, until: number, reason: EjectReason, error?: string, now = Date.now()): void {
    const r = this.record(target)
    r.ejectedUntil = until
    r.trialSince = 0
    r.totalEjections++
    target.eject(until)
    this.events.emit({
      type: 'ejected', upstream: this.upstream, target, reason, until, ejectionCount: r.ejectionCount, error, at: now,
    })
  }

  /** Hold an expired ejection while its one trial request is in flight (others skip the target). */
  startTrial (target: Target, holdUntil: number, now = Date.now()): void {
    const r = this.record(target)
    r.trialSince = now
    r.ejectedUntil = holdUntil
    target.eject(holdUntil)
    this.events.emit({ type: 'trial', upstream: this.upstream, target, at: now })
  }

  /**
   * Keep a target out on another node's word until `hint.until` (see lib/health/index.ts, applyHint,
   * for when a hint is taken). Only ever raises the ejection. With `trial` (passive detection on) the
   * hint is held like an own ejection: once it ends, the next request is the one trial that re-admits
   * or re-ejects the target; without it, the target is simply eligible again once the hint ends.
   */
  hint (target: Target, hint: { until: number, kind: HintKind, from: string }, trial: boolean, now = Date.now()): void {
    const r = this.record(target)
    r.hintUntil = hint.until
    r.hintAt = now
    r.hintFrom = hint.from
    r.hintKind = hint.kind
    if (trial && hint.until > r.ejectedUntil) {
      r.ejectedUntil = hint.until
      r.trialSince = 0 // a trial in flight no longer decides: the hint holds the target until it ends
    }
    if (hint.until > target.ejectedUntil) target.eject(hint.until)
    else this.pool.touch(target) // only the record changed: the pool hears of the hint all the same, as before
    this.events.emit({ type: 'hinted', upstream: this.upstream, target, kind: hint.kind, from: hint.from, until: hint.until, at: now })
  }

  readmit (target: Target, reason: ReadmitReason, now = Date.now()): void {
    const r = this.record(target)
    if (r.ejectedUntil === 0 && target.ejectedUntil === 0) return
    r.ejectedUntil = 0
    r.trialSince = 0
    r.passiveFailures = 0
    r.readmittedAt = now
    r.hintUntil = 0
    target.readmit()
    this.events.emit({ type: 'readmitted', upstream: this.upstream, target, reason, at: now })
  }

  noteError (r: HealthRecord, error: string | undefined, now: number): void {
    if (error === undefined) return
    r.lastError = error
    r.lastErrorAt = now
  }

  snapshot (now = Date.now()): TargetHealthSnapshot[] {
    return this.pool.targets.map((t) => {
      const r = this.record(t)
      return {
        id: t.id,
        url: t.url,
        status: r.status,
        reason: r.reason,
        since: r.since,
        lastError: r.lastError ?? null,
        lastErrorAt: r.lastErrorAt === 0 ? null : r.lastErrorAt,
        consecutiveFailures: r.consecutiveFailures,
        consecutiveSuccesses: r.consecutiveSuccesses,
        passiveFailures: r.passiveFailures,
        ejectionCount: r.ejectionCount,
        totalEjections: r.totalEjections,
        ejected: r.ejectedUntil !== 0,
        ejectedUntil: r.ejectedUntil === 0 ? null : r.ejectedUntil,
        trialInFlight: r.trialSince !== 0 && now < r.ejectedUntil,
        slowStartUntil: t.slowStartUntil > now ? t.slowStartUntil : null,
        hint: r.hintUntil > now ? { from: r.hintFrom ?? '', kind: r.hintKind ?? 'ejected', until: r.hintUntil } : null,
      }
    })
  }
}

/** One target as the status route shows it (times are epoch-ms). */
export interface TargetHealthSnapshot {
  id: string
  url: string
  status: TargetStatus
  reason: string
  since: number
  lastError: string | null
  lastErrorAt: number | null
  consecutiveFailures: number
  consecutiveSuccesses: number
  passiveFailures: number
  ejectionCount: number
  totalEjections: number
  ejected: boolean
  ejectedUntil: number | null
  trialInFlight: boolean
  slowStartUntil: number | null
  /** A live hint from another node keeping the target out (cluster-shared health), else null. */
  hint: { from: string, kind: HintKind, until: number } | null
}
