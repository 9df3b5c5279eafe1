import { GatewayError } from '../errors.js'

/** DESIGN.md names, used verbatim everywhere. */
export type TargetStatus = 'healthy' | 'unhealthy' | 'unknown' | 'draining'
export type CircuitState = 'closed' | 'open' | 'half_open'

export interface TargetSpec {
  id: string
  url: string
  weight?: number
  metadata?: Record<string, unknown>
}

/** Peak-EWMA decay constant (ms). Finagle's PeakEwma default is 10 s. */
export const DEFAULT_EWMA_TAU_MS = 10_000

/** What a target announces its eligibility changes to: the pool that holds it (UpstreamPool.touch bumps its version). */
export interface TargetOwner {
  touch (target: Target): void
}

/**
 * One upstream target and the live state the balancers read.
 * All per-request updates are O(1) and allocation free.
 *
 * The eligibility inputs (status, slow start, circuit, concurrency cap, ejection) are written only
 * through the narrow methods below (setStatus, setRoutableWhenUnknown, eject, readmit, setCircuit,
 * setHalfOpenFull, resetCircuit), each of which announces the change to the pool that holds the
 * target, once, after the fields are written: balancers see the new version, listeners a whole change.
 * A removed target announces nothing (nothing routes to it). `weight` changes through the pool
 * (UpstreamPool.setWeight), `metadata` through setMetadata (not an eligibility input: no announcement).
 */
export class Target {
  readonly id: string
  readonly url: string
  /** scheme://host:port, what reply-from and the undici Agent key on */
  readonly origin: string
  metadata: Record<string, unknown>
  /** Position in the owning pool's `targets` array; maintained by the pool. */
  index = -1
  /** The pool that holds it now; maintained by the pool (undefined once removed). */
  private owner: TargetOwner | undefined

  private _weight: number
  status: TargetStatus = 'unknown'
  /** Whether `unknown` counts as routable (false when requireHealthyOnStart). */
  routableWhenUnknown = true
  circuit: CircuitState = 'closed'
  /** Circuit breaker: half_open with every trial slot taken, so not eligible until a trial ends. */
  halfOpenFull = false
  /** Concurrency cap (circuitBreaker.maxInFlight): not eligible while inFlight >= maxInFlight. */
  maxInFlight = Infinity
  /** Passive ejection: not eligible until this epoch-ms. 0 = not ejected. */
  ejectedUntil = 0
  /** Slow start: effective weight ramps from 10 % to 100 % between these instants (epoch-ms). */
  slowStartFrom = 0
  slowStartUntil = 0

  inFlight = 0
  selections = 0
  /** Peak EWMA of response time in ms, and when it was last updated (epoch-ms). */
  private _ewma = 0
  private _ewmaStamp = 0
  ewmaTauMs = DEFAULT_EWMA_TAU_MS

  constructor (spec: TargetSpec) {
    if (typeof spec.id !== 'string' || spec.id === '') throw new TypeError('target id must be a non-empty string')
    let parsed: URL
    try {
      parsed = new URL(spec.url)
    } catch {
      throw new TypeError(`target "${spec.id}" has an invalid url: ${spec.url}`)
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new TypeError(`target "${spec.id}" url must be http or https: ${spec.url}`)
    }
    this.id = spec.id
    this.url = spec.url
    this.origin = parsed.origin
    this._weight = checkWeight(spec.weight ?? 1, spec.id)
    this.metadata = spec.metadata ?? {}
  }

  /** Called by the pool that adds (`owner`) or removes (undefined) this target. */
  setOwner (owner: TargetOwner | undefined): void { this.owner = owner }

  /** A health transition; `slowStart`: the weight ramps from 10 % to 100 % between these instants (epoch-ms). */
  setStatus (status: TargetStatus, slowStart?: { from: number, until: number }): void {
    this.status = status
    if (slowStart !== undefined) {
      this.slowStartFrom = slowStart.from
      this.slowStartUntil = slowStart.until
    }
    this.announce()
  }

  /** Whether `unknown` counts as routable (false when requireHealthyOnStart). */
  setRoutableWhenUnknown (routable: boolean): void {
    this.routableWhenUnknown = routable
    this.announce()
  }

  /** Out of traffic until `until` (epoch-ms; passive ejection, a trial's hold, another node's hint). */
  eject (until: number): void {
    this.ejectedUntil = until
    this.announce()
  }

  /** Back in traffic (no ejection). */
  readmit (): void {
    this.ejectedUntil = 0
    this.announce()
  }

  /** The breaker entered `state`: its trial slots are free again. */
  setCircuit (state: CircuitState): void {
    this.circuit = state
    this.halfOpenFull = false
    this.announce()
  }

  /** half_open: every trial slot taken (not eligible until one ends). Announced only when it changes. */
  setHalfOpenFull (full: boolean): void {
    if (full === this.halfOpenFull) return
    this.halfOpenFull = full
    this.announce()
  }

  /** A breaker starts or stops: closed, no trial in flight, this concurrency cap. Announced only when the circuit changes. */
  resetCircuit (maxInFlight: number): void {
    const changed = this.circuit !== 'closed' || this.halfOpenFull
    this.circuit = 'closed'
    this.halfOpenFull = false
    this.maxInFlight = maxInFlight
    if (changed) this.announce()
  }

  /** Descriptive data (toJSON, the admin status); no balancer reads it, so nothing is announced. */
  setMetadata (metadata: Record<string, unknown> | undefined): void {
    this.metadata = metadata ?? {}
  }

  private announce (): void {
    this.owner?.touch(this)
  }

  get weight (): number { return this._weight }
  set weight (w: number) { this._weight = checkWeight(w, this.id) }

  /**
   * Weight after slow start: linear ramp from 10 % to 100 % of `weight`.
   * `now` is epoch-ms; pass it in so a pick reads the clock once.
   */
  effectiveWeight (now: number): number {
    if (now >= this.slowStartUntil) return this._weight
    const span = this.slowStartUntil - this.slowStartFrom
    const f = span > 0 ? (now - this.slowStartFrom) / span : 1
    return this._weight * (0.1 + 0.9 * Math.max(0, Math.min(1, f)))
  }

  /** Can a new request be sent here (ignoring "already tried by this request")? */
  isEligible (now: number): boolean {
    const s = this.status
    if (s === 'unhealthy' || s === 'draining') return false
    if (s === 'unknown' && !this.routableWhenUnknown) return false
    const c = this.circuit
    if (c === 'open' || (c === 'half_open' && this.halfOpenFull)) return false
    if (this.inFlight >= this.maxInFlight) return false
    if (this.ejectedUntil !== 0 && now < this.ejectedUntil) return false
    return this._weight > 0
  }

  /**
   * Can it be routed to at all: isEligible without the transient parts (concurrency cap,
   * half-open trial slots). Changes to it are announced with pool.touch() (ejection expiry aside).
   */
  isRoutable (now: number): boolean {
    const s = this.status
    if (s === 'unhealthy' || s === 'draining') return false
    if (s === 'unknown' && !this.routableWhenUnknown) return false
    if (this.circuit === 'open') return false
    if (this.ejectedUntil !== 0 && now < this.ejectedUntil) return false
    return this._weight > 0
  }

  onRequestStart (): void {
    this.inFlight++
    this.selections++
  }

  /** Call exactly once per started request; `latencyMs` < 0 means no latency sample (error). */
  onRequestEnd (latencyMs: number, now: number): void {
    if (this.inFlight > 0) this.inFlight--
    if (latencyMs >= 0) this.recordLatency(latencyMs, now)
  }

  /**
   * Peak EWMA (Finagle/linkerd): a sample above the average replaces it at once (peak),
   * below it decays in with weight exp(-dt/tau). Units: ms.
   */
  recordLatency (ms: number, now: number): void {
    const prev = this.ewmaAt(now)
    if (ms > prev || this._ewmaStamp === 0) {
      this._ewma = ms
    } else {
      const dt = Math.max(now - this._ewmaStamp, 0)
      const w = Math.exp(-dt / this.ewmaTauMs)
      this._ewma = prev * w + ms * (1 - w)
    }
    this._ewmaStamp = now
  }

  /**
   * The EWMA as seen at `now`: with no new samples it decays toward 0 (tau = ewmaTauMs),
   * so a target that was slow and stopped getting traffic is tried again.
   */
  ewmaAt (now: number): number {
    if (this._ewmaStamp === 0) return 0
    const dt = now - this._ewmaStamp
    return dt <= 0 ? this._ewma : this._ewma * Math.exp(-dt / this.ewmaTauMs)
  }

  toJSON (now = Date.now()): Record<string, unknown> {
    return {
      id: this.id,
      url: this.url,
      weight: this._weight,
      effectiveWeight: round2(this.effectiveWeight(now)),
      status: this.status,
      inFlight: this.inFlight,
      ewmaMs: round2(this.ewmaAt(now)),
      circuit: this.circuit,
      ejected: this.ejectedUntil > now,
      selections: this.selections,
      metadata: this.metadata,
    }
  }
}

function round2 (n: number): number { return Math.round(n * 100) / 100 }

function checkWeight (w: number, id: string): number {
  if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) {
    throw new GatewayError('INVALID_CONFIG', `target "${id}" weight must be a number >= 0, got ${String(w)}`)
  }
  return w
}
