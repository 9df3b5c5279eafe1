import type { PoolChange, UpstreamPool } from '../upstream/pool.js'
import type { Target } from '../upstream/target.js'
import { ActiveChecker, type ActiveHooks, type ActiveOptions } from './active.js'
import { PassiveDetector, type PassiveOptions, type RequestResult } from './passive.js'
import { AutoRecovery, type RecoveryOptions } from './recovery.js'
import type { HintKind } from './events.js'
import { HealthRegistry } from './registry.js'
import type { PoolHealth, TargetHealthSnapshot } from './state.js'

export * from './events.js'
export * from './state.js'
export * from './registry.js'
export * from './probe.js'
export * from './probe-http.js'
export * from './probe-tcp.js'
export * from './active.js'
export * from './passive.js'
export * from './recovery.js'

/** `upstreams.<name>.healthCheck`, normalized (durations in ms). */
export interface HealthCheckOptions {
  active?: ActiveOptions
  passive?: PassiveOptions
  /** ms of weight ramp (10 % -> 100 %) after a target turns healthy; 0 or absent = off. */
  slowStart?: number
  recovery?: RecoveryOptions
}

export interface HealthHooks extends ActiveHooks {
  /** Share one registry (and its event hub) across the pools of a node; default a new one. */
  registry?: HealthRegistry
}

/** Health of one upstream pool: call start() once, close() on shutdown. */
export interface Health {
  readonly registry: HealthRegistry
  readonly state: PoolHealth
  readonly active: ActiveChecker | undefined
  readonly passive: PassiveDetector | undefined
  readonly recovery: AutoRecovery | undefined
  start: () => void
  close: () => Promise<void>
  /** Call right after the balancer picked `target` (turns an expired ejection into its one trial). */
  onRequestStart: (target: Target, now: number) => void
  /** Call once per finished proxied request. */
  onResult: (target: Target, result: RequestResult, now?: number) => void
  snapshot: (now?: number) => TargetHealthSnapshot[]
  /** Take another node's hint about `target` (cluster-shared health); see applyHint below for the rule. */
  applyHint: (target: Target, hint: RemoteHint, now?: number) => HintOutcome
}

/** A hint from another node, `until` already in this node's clock (lib/cluster/health-hints.ts). */
export interface RemoteHint {
  kind: HintKind
  from: string
  until: number
}

/** What became of a hint: applied, or why not. */
export type HintOutcome = 'applied' | 'expired' | 'already_out' | 'last_eligible' | 'ejection_limit'

/**
 * Wires active probes, passive ejection and auto recovery for one pool.
 * Without `active`, targets are taken as healthy (reason `no_active_check`), as Envoy
 * does without a health checker; passive ejection still applies.
 */
export function createHealth (pool: UpstreamPool, options: HealthCheckOptions = {}, hooks: HealthHooks = {}): Health {
  const registry = hooks.registry ?? new HealthRegistry()
  const state = registry.forPool(pool, { slowStart: options.slowStart ?? 0 })
  const active = options.active !== undefined ? new ActiveChecker(state, options.active, hooks) : undefined
  const passive = options.passive !== undefined ? new PassiveDetector(state, options.passive) : undefined
  const recovery = options.recovery !== undefined ? new AutoRecovery(state, options.recovery) : undefined
  const assumeHealthy = (c: PoolChange): void => {
    if (c.type === 'added') state.setVerdict(c.target, 'healthy', 'no_active_check')
  }
  let started = false

  return {
    registry,
    state,
    active,
    passive,
    recovery,
    start () {
      if (started) return
      started = true
      if (active === undefined) {
        pool.on('change', assumeHealthy)
        for (const t of pool.targets) state.setVerdict(t, 'healthy', 'no_active_check')
      }
      passive?.start()
      recovery?.start()
      active?.start()
    },
    async close () {
      if (!started) return
      started = false
      pool.off('change', assumeHealthy)
      passive?.close()
      await Promise.all([active?.stop(), recovery?.stop()])
    },
    onRequestStart: passive !== undefined ? (t, now) => passive.onRequestStart(t, now) : noop,
    onResult: passive !== undefined ? (t, r, now) => passive.onResult(t, r, now) : noop,
    snapshot: (now) => state.snapshot(now),
    applyHint (target, hint, now = Date.now()) {
      // 1. an expired hint, or one that would not keep the target out any longer, changes nothing
      if (hint.until <= now) return 'expired'
      if (target.ejectedUntil >= hint.until) return 'already_out'
      // 2. a target this node already keeps out for its own reasons (unhealthy, draining, open circuit)
      //    costs nothing more; otherwise the hint obeys this node's ejection limits, as its own ejections do
      if (target.isEligible(now)) {
        const refusal = passive !== undefined ? passive.refusal(target, now) : lastEligible(pool, target, now)
        if (refusal !== undefined) return refusal
      }
      state.hint(target, hint, passive !== undefined, now)
      return 'applied'
    },
  }
}

function lastEligible (pool: UpstreamPool, target: Target, now: number): 'last_eligible' | undefined {
  for (const t of pool.targets) if (t !== target && t.isEligible(now)) return undefined
  return 'last_eligible'
}

function noop (): void {}
