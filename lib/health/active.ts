import { Agent } from 'undici'
import type { TlsConnectOptions } from '../upstream/tls.js'
import { GatewayError } from '../errors.js'
import type { PoolChange } from '../upstream/pool.js'
import type { Target } from '../upstream/target.js'
import type { ExpectedStatuses, Probe, ProbeResult, ProbeType } from './probe.js'
import { createHttpProbe } from './probe-http.js'
import { createTcpProbe } from './probe-tcp.js'
import type { PoolHealth, Thresholds } from './state.js'

/** `healthCheck.active`, durations already in ms. */
export interface ActiveOptions {
  type: ProbeType
  /** TLS connect options of https targets (the upstream's `tls`), as the proxy uses them. */
  tls?: TlsConnectOptions
  method?: string
  path?: string
  expectedStatuses?: ExpectedStatuses
  host?: string
  interval: number
  /** Delay between probes while a target is unhealthy; default `interval`. */
  unhealthyInterval?: number
  timeout: number
  healthyThreshold: number
  unhealthyThreshold: number
  /** Random 0..jitter ms added to every delay; default 10 % of `interval`. */
  jitter?: number
  /** Probes in flight at once for this pool; default 10. */
  concurrency?: number
  /** Keep targets out of rotation until their first probe passes. */
  requireHealthyOnStart?: boolean
  /** Share probes across the cluster's nodes (needs a coordinator in ActiveHooks): one node probes, all take the result. */
  shared?: boolean
}

export interface ProbeSample {
  upstream: string
  target: Target
  type: ProbeType
  result: ProbeResult
}

export interface ActiveHooks {
  /** Called after every probe (metrics: probe duration histogram). Must not throw; errors are swallowed. */
  onProbe?: (sample: ProbeSample) => void
  /** Shared probing (`shared: true`): who probes an upstream this interval, and where results go. */
  coordinator?: ProbeCoordinator
}

/**
 * Shared probing across nodes (lib/cluster/shared-probes.ts implements it on a Redis lease): one node
 * probes an upstream's targets per interval and publishes each result; the others skip their probes
 * and take the published results through ActiveChecker.applyShared.
 */
export interface ProbeCoordinator {
  /** The checker of `upstream` starts sharing with this interval (ms); returns the function to call when it stops. */
  join (upstream: string, interval: number): () => void
  /** A probe is due: false when another node probes this upstream now. Synchronous, O(1). */
  shouldProbe (upstream: string): boolean
  /** This node probed `target`: share the result. Must not throw. */
  share (upstream: string, target: Target, result: ProbeResult): void
}

export const DEFAULT_CONCURRENCY = 10
/** The first probe runs at start; its jitter is capped so a verdict comes quickly. */
const FIRST_PROBE_JITTER_MAX = 100

interface Entry {
  readonly target: Target
  timer: NodeJS.Timeout | undefined
  stopped: boolean
  readonly fire: () => void
}

/**
 * Probes every target of one pool on its own timer (no overlap per target), with
 * bounded concurrency through a FIFO queue, and feeds results to the state machine.
 */
export class ActiveChecker {
  readonly health: PoolHealth
  readonly options: Readonly<ActiveOptions>
  private readonly hooks: ActiveHooks
  private readonly thresholds: Thresholds
  private readonly concurrency: number
  private readonly jitter: number
  private readonly entries = new Map<Target, Entry>()
  private queue: Entry[] = []
  private head = 0
  private running = 0
  private started = false
  private agent: Agent | undefined
  private probe: Probe | undefined
  /** Bumps on start and stop: a probe that completes in another generation is dropped. */
  private generation = 0
  private readonly coordinator: ProbeCoordinator | undefined
  private leave: (() => void) | undefined
  private readonly onPoolChange = (c: PoolChange): void => {
    if (c.type === 'added') this.track(c.target)
    else if (c.type === 'removed') this.untrack(c.target)
  }

  constructor (health: PoolHealth, options: ActiveOptions, hooks: ActiveHooks = {}) {
    checkPositive('interval', options.interval)
    checkPositive('timeout', options.timeout)
    this.health = health
    this.options = options
    this.hooks = hooks
    this.thresholds = {
      healthy: Math.max(1, Math.floor(options.healthyThreshold)),
      unhealthy: Math.max(1, Math.floor(options.unhealthyThreshold)),
    }
    this.concurrency = Math.max(1, Math.floor(options.concurrency ?? DEFAULT_CONCURRENCY))
    this.jitter = Math.max(0, options.jitter ?? options.interval * 0.1)
    this.coordinator = options.shared === true ? hooks.coordinator : undefined
  }

  get inFlight (): number { return this.running }
  get size (): number { return this.entries.size }

  start (): void {
    if (this.started) return
    this.started = true
    this.generation++
    if (this.options.type === 'tcp') {
      this.probe = createTcpProbe({ timeout: this.options.timeout })
    } else {
      // Own Agent: probes never wait behind proxied requests; pipelining 1 so a slow probe blocks nothing else.
      this.agent = new Agent({ pipelining: 1, connections: this.concurrency, connect: { ...this.options.tls, timeout: this.options.timeout } })
      this.probe = createHttpProbe(this.options, this.agent)
    }
    this.health.pool.on('change', this.onPoolChange)
    for (const t of this.health.pool.targets) this.track(t)
    this.leave = this.coordinator?.join(this.health.upstream, this.options.interval)
  }

  /**
   * A probe result another node shared (shared probing): fed to the state machine as if this node
   * had probed, for a target it tracks. Not reported to onProbe (that is this node's own probes).
   */
  applyShared (target: Target, result: ProbeResult): void {
    if (!this.started || !this.entries.has(target)) return
    this.apply(target, result, false)
  }

  /** Clears every timer, drops probes in flight and closes the Agent (which fails its requests at once). */
  async stop (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.leave?.()
    this.leave = undefined
    this.health.pool.off('change', this.onPoolChange)
    for (const e of this.entries.values()) this.cancel(e)
    this.entries.clear()
    this.queue = []
    this.head = 0
    this.running = 0
    this.generation++
    const agent = this.agent
    this.agent = undefined
    if (agent !== undefined) await agent.destroy().catch(() => {})
  }

  private track (target: Target): void {
    if (this.entries.has(target)) return
    if (this.options.requireHealthyOnStart === true && target.routableWhenUnknown) {
      target.setRoutableWhenUnknown(false)
    }
    const entry: Entry = {
      target,
      timer: undefined,
      stopped: false,
      fire: () => {
        entry.timer = undefined
        // shared probing: another node probes this interval; its results come through applyShared
        if (this.coordinator !== undefined && !this.coordinator.shouldProbe(this.health.upstream)) {
          this.schedule(entry, this.nextDelay(target))
          return
        }
        this.enqueue(entry)
      },
    }
    this.entries.set(target, entry)
    this.health.record(target)
    this.schedule(entry, Math.random() * Math.min(this.jitter, FIRST_PROBE_JITTER_MAX))
  }

  private untrack (target: Target): void {
    const e = this.entries.get(target)
    if (e === undefined) return
    this.cancel(e)
    this.entries.delete(target)
  }

  private cancel (e: Entry): void {
    e.stopped = true
    if (e.timer !== undefined) clearTimeout(e.timer)
    e.timer = undefined
  }

  private schedule (e: Entry, delay: number): void {
    e.timer = setTimeout(e.fire, delay)
    e.timer.unref()
  }

  private nextDelay (target: Target): number {
    const unhealthy = this.health.record(target).verdict === 'unhealthy'
    const base = unhealthy ? (this.options.unhealthyInterval ?? this.options.interval) : this.options.interval
    return base + Math.random() * this.jitter
  }

  private enqueue (e: Entry): void {
    this.queue.push(e)
    this.pump()
  }

  private pump (): void {
    while (this.running < this.concurrency && this.head < this.queue.length) {
      const e = this.queue[this.head++]
      if (this.head === this.queue.length) { this.queue = []; this.head = 0 }
      if (!e.stopped) this.run(e)
    }
  }

  private run (e: Entry): void {
    const probe = this.probe
    if (probe === undefined) return
    this.running++
    // No per-probe AbortSignal (costly at 1,000 probes/s): stop() destroys the Agent, and a
    // tcp probe still in flight ends by its own timeout; its result is dropped below.
    const gen = this.generation
    probe(e.target).then(
      (result) => this.complete(e, result, gen),
      (err: unknown) => this.complete(e, { ok: false, durationMs: 0, error: String(err) }, gen),
    )
  }

  private complete (e: Entry, result: ProbeResult, gen: number): void {
    if (gen !== this.generation) return // stopped meanwhile: the counters were reset
    this.running--
    if (!e.stopped) {
      this.apply(e.target, result)
      this.schedule(e, this.nextDelay(e.target))
    }
    this.pump()
  }

  private apply (target: Target, result: ProbeResult, own = true): void {
    const now = Date.now()
    if (own && this.hooks.onProbe !== undefined) {
      try {
        this.hooks.onProbe({ upstream: this.health.upstream, target, type: this.options.type, result })
      } catch {}
    }
    if (own && this.coordinator !== undefined) {
      try { this.coordinator.share(this.health.upstream, target, result) } catch {}
    }
    this.health.recordProbe(target, result.ok, result.error, this.thresholds, now)
    // A passing probe ends a passive ejection at once (Envoy: successful_active_health_check_uneject_host),
    // and another node's hint too, provided the probe started after the hint arrived.
    if (result.ok && target.ejectedUntil !== 0) {
      const hintAt = this.health.record(target).hintAt
      if (hintAt === 0 || now - result.durationMs >= hintAt) this.health.readmit(target, 'active_probe', now)
    }
  }
}

function checkPositive (name: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new GatewayError('INVALID_CONFIG', `healthCheck.active.${name} must be a positive number of ms, got ${String(v)}`)
  }
}
