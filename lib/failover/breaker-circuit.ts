import type { Target } from '../upstream/target.js'
import type { CircuitEvent, TripCause } from './events.js'
import type { BreakerStrategy } from './breaker-strategy.js'
import { ConsecutiveBreaker } from './breaker-consecutive.js'
import { SamplingBreaker } from './breaker-sampling.js'

export interface CircuitBreakerOptions {
  /** Failure share in percent (0..100) over `window` that opens the circuit. */
  errorThreshold?: number
  /** Fewest requests in `window` before the ratio counts. */
  volumeThreshold?: number
  /** Rolling window (ms), counted in `buckets` slots. */
  window?: number
  buckets?: number
  /** Failures in a row that open the circuit; 0 = off. */
  consecutiveFailures?: number
  /** First open period (ms); doubles with each consecutive trip... */
  openDuration?: number
  /** ...up to this (ms). */
  maxOpenDuration?: number
  /** Trial requests let through while half_open; all must succeed to close. */
  halfOpenRequests?: number
  /** Concurrency cap per target: at or above it the target is skipped. */
  maxInFlight?: number
}

export const BREAKER_DEFAULTS = {
  errorThreshold: 50,
  volumeThreshold: 20,
  window: 10_000,
  buckets: 10,
  consecutiveFailures: 5,
  openDuration: 5_000,
  maxOpenDuration: 60_000,
  halfOpenRequests: 1,
  maxInFlight: Infinity,
}

export interface BreakerHooks {
  upstream: string
  now?: () => number
  onEvent?: (event: CircuitEvent, target: Target) => void
  /**
   * true (default): an unref'd timer moves open -> half_open when the open period ends.
   * false: the transition happens lazily, in poll(now) or acquire(now).
   */
  timers?: boolean
}

/** Ticket value for a refused request. */
export const REFUSED = -1

/**
 * The circuit breaker of one target. It owns `target.circuit`, `target.halfOpenFull` and
 * `target.maxInFlight`, so Target.isEligible (and every balancer) skips an open circuit.
 *
 * Per try: `acquire(now)` before target.onRequestStart() returns a ticket (or REFUSED: pick
 * another target); give the ticket back with success/failure/release. A ticket from an earlier
 * state (a request started before the circuit moved) is stale and ignored.
 */
export class CircuitBreaker {
  readonly target: Target
  readonly upstream: string
  /** Bumps on every state change; tickets carry it. */
  generation = 0
  /** Consecutive trips since the circuit last closed. */
  trips = 0
  /** Epoch-ms when the open period ends. */
  openUntil = 0
  private trialsInFlight = 0
  private trialsPassed = 0
  private timer: NodeJS.Timeout | undefined
  private readonly strategies: BreakerStrategy[] = []
  private readonly openDuration: number
  private readonly maxOpenDuration: number
  private readonly halfOpenRequests: number
  private readonly now: () => number
  private readonly onEvent: ((event: CircuitEvent, target: Target) => void) | undefined
  private readonly timers: boolean

  constructor (target: Target, opts: CircuitBreakerOptions, hooks: BreakerHooks) {
    const o = { ...BREAKER_DEFAULTS, ...stripUndefined(opts) }
    if (!(o.openDuration > 0)) throw new RangeError('openDuration must be > 0 ms')
    if (!(o.halfOpenRequests >= 1)) throw new RangeError('halfOpenRequests must be >= 1')
    if (!(o.maxInFlight >= 1)) throw new RangeError('maxInFlight must be >= 1')
    this.target = target
    this.upstream = hooks.upstream
    this.openDuration = o.openDuration
    this.maxOpenDuration = Math.max(o.maxOpenDuration, o.openDuration)
    this.halfOpenRequests = o.halfOpenRequests
    this.now = hooks.now ?? Date.now
    this.onEvent = hooks.onEvent
    this.timers = hooks.timers ?? true
    this.strategies.push(new SamplingBreaker(o))
    if (o.consecutiveFailures > 0) this.strategies.push(new ConsecutiveBreaker(o.consecutiveFailures))
    target.resetCircuit(o.maxInFlight) // the target announces its changes to its pool itself
  }

  get state (): Target['circuit'] { return this.target.circuit }

  /** Admit a try: a ticket for success/failure/release, or REFUSED. */
  acquire (now = this.now()): number {
    const t = this.target
    if (t.circuit === 'open') this.poll(now)
    switch (t.circuit) {
      case 'open': return REFUSED
      case 'half_open':
        if (this.trialsInFlight + this.trialsPassed >= this.halfOpenRequests) return REFUSED
        this.trialsInFlight++
        this.syncFull()
        return this.generation
      default:
        return t.inFlight >= t.maxInFlight ? REFUSED : this.generation
    }
  }

  success (ticket: number, now = this.now()): void {
    if (ticket !== this.generation) return
    if (this.target.circuit === 'closed') {
      for (const s of this.strategies) s.success(now)
    } else if (this.target.circuit === 'half_open') {
      this.trialsInFlight--
      if (++this.trialsPassed >= this.halfOpenRequests) this.close(now)
    }
  }

  failure (ticket: number, now = this.now()): void {
    if (ticket !== this.generation) return
    if (this.target.circuit === 'closed') {
      let cause: TripCause | undefined
      // every strategy records the failure, the first that trips names the cause
      for (const s of this.strategies) if (s.failure(now) && cause === undefined) cause = s.cause
      if (cause !== undefined) this.open(now, cause)
    } else if (this.target.circuit === 'half_open') {
      this.open(now, 'half_open_failure')
    }
  }

  /** The try ended with no verdict on the target (client abort): frees a trial slot. */
  release (ticket: number): void {
    if (ticket !== this.generation || this.target.circuit !== 'half_open') return
    this.trialsInFlight--
    this.syncFull()
  }

  /** open -> half_open once the open period has passed. */
  poll (now = this.now()): void {
    if (this.target.circuit === 'open' && now >= this.openUntil) this.halfOpen(now)
  }

  /** Stop the timer and give the target back its defaults (closed, no cap). */
  dispose (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.target.resetCircuit(Infinity)
  }

  private open (now: number, cause: TripCause): void {
    this.trips++
    // doubling per consecutive trip; the exponent is bounded so 2 ** n stays finite
    const openMs = Math.min(this.maxOpenDuration, this.openDuration * 2 ** Math.min(this.trips - 1, 30))
    this.openUntil = now + openMs
    this.enter('open')
    this.schedule(openMs)
    this.emit({ type: 'circuit_opened', timestamp: now, upstream: this.upstream, target: this.target.id, cause, openMs, trips: this.trips })
  }

  private halfOpen (now: number): void {
    this.enter('half_open')
    this.emit({ type: 'circuit_half_opened', timestamp: now, upstream: this.upstream, target: this.target.id })
  }

  private close (now: number): void {
    this.trips = 0
    this.enter('closed')
    this.emit({ type: 'circuit_closed', timestamp: now, upstream: this.upstream, target: this.target.id })
  }

  private enter (state: Target['circuit']): void {
    this.generation++
    this.trialsInFlight = 0
    this.trialsPassed = 0
    for (const s of this.strategies) s.reset()
    this.target.setCircuit(state)
  }

  /** half_open: the target is eligible only while a trial slot is free. */
  private syncFull (): void {
    this.target.setHalfOpenFull(this.trialsInFlight + this.trialsPassed >= this.halfOpenRequests)
  }

  private schedule (ms: number): void {
    if (!this.timers) return
    clearTimeout(this.timer)
    this.timer = setTimeout(() => {
      this.timer = undefined
      const now = this.now()
      this.poll(now)
      // Date.now() may trail the timer clock by a millisecond: try again shortly
      if (this.target.circuit === 'open') this.schedule(Math.max(1, this.openUntil - now))
    }, ms)
    this.timer.unref()
  }

  private emit (event: CircuitEvent): void {
    if (this.onEvent === undefined) return
    try {
      this.onEvent(event, this.target)
    } catch {
      // a listener's bug must not break the data path
    }
  }
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] !== undefined) out[k] = o[k]
  return out
}
