// The health checks of a node's upstreams, without Fastify: one `Health` (active checker, passive
// detector, recovery) per upstream of the load balancer, started when the upstream appears, stopped
// when it goes, restarted in place when its options change (the targets' records kept), and fed the
// proxy's try results through the upstream's observers. The health-check plugin wires it to the app.
import type { TryObserver, UpstreamEntry, UpstreamRegistry } from '../upstream/registry.js'
import type { ProbeResult } from './probe.js'
import type { ProbeCoordinator, ProbeSample } from './active.js'
import type { HealthRegistry } from './registry.js'
import type { RecoveryAction } from './recovery.js'
import { chainCoordinators } from '../workers/probes.js'
import { createHealth, type Health, type HealthCheckOptions, type HintOutcome, type RemoteHint } from './index.js'

/** `upstreams.<name>.healthCheck` as the config gives it (normalized) or code writes it (ms). */
export interface UpstreamHealthOptions {
  active?: HealthCheckOptions['active'] & { expectedStatuses?: ReadonlyArray<number | readonly [number, number]> }
  passive?: Omit<NonNullable<HealthCheckOptions['passive']>, 'failureStatuses'> & { failureStatuses?: ReadonlyArray<number | readonly [number, number]> }
  slowStart?: number
  recovery?: Omit<NonNullable<HealthCheckOptions['recovery']>, 'action'>
  /** /ready waits for this upstream (default true). */
  required?: boolean
}

export interface HealthSupervisorOptions {
  /** The load balancer's upstreams: checks follow 'added' and 'removed'. */
  upstreams: UpstreamRegistry
  /** The node's health records and event hub (shared by every upstream's checks). */
  registry: HealthRegistry
  /** Boot options by upstream name. */
  options?: Record<string, { healthCheck?: UpstreamHealthOptions }>
  /** Recovery actions given in code, by upstream name. */
  recoveryActions?: Record<string, RecoveryAction>
  /** After every probe (metrics). */
  onProbe?: (sample: ProbeSample) => void
  /** A check that failed to close (logged by the caller). */
  onCloseError?: (err: unknown) => void
  /**
   * The node's own coordinator (node.workers: only one worker probes): every upstream's active checks share
   * through it, before the cluster's (an upstream with `active.shared` and Redis). Absent: as without workers.
   */
  probeCoordinator?: ProbeCoordinator
}

interface Check { health: Health, observer: TryObserver, entry: UpstreamEntry }

export class HealthSupervisor {
  private readonly checks = new Map<string, Check>()
  /** The options each upstream runs with: the boot config's, then what configure() sets. */
  private readonly options = new Map<string, UpstreamHealthOptions | undefined>()
  private coordinator: ProbeCoordinator | undefined
  private closed = false
  private readonly onAdded = (e: UpstreamEntry): void => { this.attach(e) }
  private readonly onRemoved = (e: UpstreamEntry): void => { this.detach(e.name) }

  constructor (private readonly o: HealthSupervisorOptions) {
    for (const [name, u] of Object.entries(o.options ?? {})) this.options.set(name, u.healthCheck)
    o.upstreams.on('added', this.onAdded)
    o.upstreams.on('removed', this.onRemoved)
  }

  /** Whether /ready waits for this upstream. */
  required (name: string): boolean { return this.options.get(name)?.required ?? true }

  /** Upstreams whose checks run now. */
  running (): string[] { return [...this.checks.keys()] }

  /** Start the checks of every upstream that has none yet (the app is ready: no timers before). */
  start (): void {
    for (const e of this.o.upstreams) if (!this.checks.has(e.name)) this.attach(e)
  }

  /**
   * Set an upstream's options at run time. When they differ from the running ones and its checks run,
   * they restart with the new options, the targets' records kept. Returns whether anything restarted;
   * a throw (options that cannot run) keeps the running checks and their options.
   */
  configure (name: string, healthCheck: UpstreamHealthOptions | undefined): boolean {
    const before = this.options.get(name)
    if (JSON.stringify(before ?? {}) === JSON.stringify(healthCheck ?? {})) return false
    this.options.set(name, healthCheck)
    const c = this.checks.get(name)
    if (c === undefined || this.closed) return false // attached later with these options
    try {
      this.attach(c.entry, true)
    } catch (err) {
      // the old checks still run: keep their options, so the next good config is compared with them
      this.options.set(name, before)
      throw err
    }
    return true
  }

  /** Shared probing: who probes upstreams whose `active.shared` is set; their checks restart with it. */
  setProbeCoordinator (c: ProbeCoordinator | undefined): void {
    if (c === this.coordinator) return
    this.coordinator = c
    if (this.closed) return
    for (const [name, check] of [...this.checks]) if (this.options.get(name)?.active?.shared === true) this.attach(check.entry, true)
  }

  /** A probe result another node shared: false when nothing took it. */
  applySharedProbe (upstream: string, targetId: string, result: ProbeResult): boolean {
    const c = this.checks.get(upstream)
    const active = c?.health.active
    const target = c?.entry.pool.get(targetId)
    if (active === undefined || target === undefined || active.options.shared !== true) return false
    active.applyShared(target, result)
    return true
  }

  /** Another node's hint about a target (lib/health/index.ts applyHint). */
  applyHint (upstream: string, targetId: string, hint: RemoteHint): HintOutcome | 'unknown_target' {
    const c = this.checks.get(upstream)
    const target = c?.entry.pool.get(targetId)
    if (c === undefined || target === undefined) return 'unknown_target'
    return c.health.applyHint(target, hint)
  }

  /** Stop every check and stop following the upstreams. */
  async close (): Promise<void> {
    this.closed = true
    this.o.upstreams.off('added', this.onAdded)
    this.o.upstreams.off('removed', this.onRemoved)
    const all = [...this.checks.values()]
    this.checks.clear()
    await Promise.all(all.map(async (c) => await c.health.close()))
  }

  /** Start an upstream's checks with its options; the running ones stop only once the new ones are built (a throw keeps them). */
  private attach (entry: UpstreamEntry, keepState = false): void {
    if (!keepState) this.detach(entry.name)
    const cfg = this.options.get(entry.name) ?? {}
    const action = this.o.recoveryActions?.[entry.name]
    const nodeWide = this.o.probeCoordinator
    const active = cfg.active === undefined || (entry.tls === undefined && nodeWide === undefined)
      ? cfg.active
      : { ...cfg.active, ...(entry.tls === undefined ? {} : { tls: entry.tls }), ...(nodeWide === undefined ? {} : { shared: true }) }
    const coordinator = nodeWide === undefined ? this.coordinator : chainCoordinators(nodeWide, cfg.active?.shared === true ? this.coordinator : undefined)
    const health = createHealth(entry.pool, {
      active,
      passive: cfg.passive === undefined ? undefined : { ...cfg.passive, failureStatuses: expandStatuses(cfg.passive.failureStatuses) },
      slowStart: cfg.slowStart,
      recovery: cfg.recovery === undefined ? undefined : { ...cfg.recovery, action },
    }, { registry: this.o.registry, onProbe: this.o.onProbe, coordinator })
    const observer: TryObserver = {
      onTryStart: health.onRequestStart,
      onTryEnd (target, r, now) {
        if (r.aborted) return
        health.onResult(target, r.error !== undefined
          ? { ok: false, error: (r.error as { code?: string }).code ?? r.error.message }
          : { ok: true, status: r.statusCode }, now)
      },
    }
    this.detach(entry.name, keepState)
    entry.observers.push(observer)
    this.checks.set(entry.name, { health, observer, entry })
    health.start()
  }

  /** Stop an upstream's checks; `keepState` keeps its health records (a restart with new options). */
  private detach (name: string, keepState = false): void {
    const c = this.checks.get(name)
    if (c === undefined) return
    this.checks.delete(name)
    const i = c.entry.observers.indexOf(c.observer)
    if (i !== -1) c.entry.observers.splice(i, 1)
    c.health.close().catch((err: unknown) => { this.o.onCloseError?.(err) })
    if (!keepState) this.o.registry.delete(name)
  }
}

/** [[502, 504]] -> [502, 503, 504]: the config's ranges as the detector's status list. */
export function expandStatuses (spec: ReadonlyArray<number | readonly [number, number]> | undefined): number[] | undefined {
  if (spec === undefined) return undefined
  const out: number[] = []
  for (const s of spec) {
    if (typeof s === 'number') out.push(s)
    else for (let c = s[0]; c <= s[1]; c++) out.push(c)
  }
  return out
}
