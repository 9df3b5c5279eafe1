import { RetryPolicy, type RetryPolicyOptions } from '../failover/retry-policy.js'
import { RetryBudget } from '../failover/retry-budget.js'
import { PoolBreakers } from '../failover/breaker-pool.js'
import type { CircuitBreakerOptions } from '../failover/breaker-circuit.js'
import type { CircuitEvent } from '../failover/events.js'
import type { UpstreamEntry } from '../upstream/registry.js'
import type { UpstreamPool } from '../upstream/pool.js'
import type { Target } from '../upstream/target.js'

/** `upstreams.<name>.failover` (and a route's `failover` override, every key optional). */
export interface FailoverOptions extends RetryPolicyOptions {
  /** Retries and hedges in flight, as a percent of the upstream's active requests (default 20). */
  budgetPercent?: number
  /** Retries in flight always allowed (default 3). */
  minRetryConcurrency?: number
  /** Upstream that serves when this one has no eligible target or every try failed. */
  fallback?: string
  /** Hedging (idempotent methods only): one more try on another target after `delay` ms without response headers. */
  hedge?: { delay: number }
}

/** A route's static answer when no target could serve. */
export interface FallbackResponse {
  status?: number
  body?: string | Record<string, unknown>
  headers?: Record<string, string>
}

/** Per-upstream state shared by every route: the retry budget and the breakers. */
export class UpstreamFailover {
  readonly name: string
  readonly pool: UpstreamPool
  readonly options: FailoverOptions
  readonly breakerOptions: CircuitBreakerOptions | undefined
  readonly policy: RetryPolicy
  readonly budget: RetryBudget
  readonly breakers: PoolBreakers | undefined

  /** `breakers`: keep these (same options: a config change that leaves them alone keeps every circuit's state). */
  constructor (name: string, pool: UpstreamPool, options: FailoverOptions, breaker: CircuitBreakerOptions | undefined, hooks: FailoverHooks,
    breakers?: PoolBreakers) {
    this.name = name
    this.pool = pool
    this.options = options
    this.breakerOptions = breaker
    this.policy = new RetryPolicy(options)
    this.budget = new RetryBudget({
      budgetPercent: options.budgetPercent,
      minRetryConcurrency: options.minRetryConcurrency,
      onExhausted: () => hooks.onBudgetExhausted?.(name),
    })
    this.breakers = breakers ?? (breaker === undefined ? undefined : new PoolBreakers(pool, breaker, { onEvent: hooks.onCircuitEvent }))
  }

  dispose (): void { this.breakers?.dispose() }
}

/** What one route resolved once: its retry policy (upstream's, merged with the route's override) and fallbacks. */
export interface RouteFailover {
  policy: RetryPolicy
  fallback: string | undefined
  /** ms; 0 = no hedging. */
  hedgeDelay: number
  fallbackResponse: FallbackResponse | undefined
}

export interface FailoverHooks {
  onBudgetExhausted?: (upstream: string) => void
  onCircuitEvent?: (event: CircuitEvent, target: Target) => void
}

/**
 * Failover state by upstream name, built lazily (upstreams added at run time get the defaults)
 * and rebuilt when an upstream's pool object changes (removed and added again) or its options
 * change (reconcile: config sync).
 */
export class FailoverRegistry {
  private readonly byName = new Map<string, UpstreamFailover>()
  /** Bumps on each reconcile: route failovers re-merge their upstream's options when it moved. */
  generation = 0
  constructor (
    private options: Record<string, FailoverOptions>,
    private breakers: Record<string, CircuitBreakerOptions>,
    private readonly hooks: FailoverHooks = {},
  ) {}

  /** One Map.get per request, plus a pool identity check. */
  get (entry: UpstreamEntry): UpstreamFailover {
    let f = this.byName.get(entry.name)
    if (f === undefined || f.pool !== entry.pool) {
      f?.dispose()
      f = new UpstreamFailover(entry.name, entry.pool, this.options[entry.name] ?? {}, this.breakers[entry.name], this.hooks)
      this.byName.set(entry.name, f)
    }
    return f
  }

  /**
   * A route's failover: the upstream's options with the route's keys on top. The object stays
   * current: after a reconcile that changes the upstream's options it merges them again.
   */
  forRoute (upstream: string, override: FailoverOptions | undefined, fallbackResponse: FallbackResponse | undefined): RouteFailover {
    return new LiveRouteFailover(this, upstream, override === undefined ? undefined : stripUndefined(override), fallbackResponse)
  }

  /**
   * Apply new options (config sync). An upstream whose retry options change gets a new budget and
   * policy; one whose circuitBreaker options change gets new breakers (its circuits start closed);
   * unchanged ones keep their state. Requests in flight finish on the state they started with.
   */
  reconcile (options: Record<string, FailoverOptions>, breakers: Record<string, CircuitBreakerOptions>): void {
    for (const [name, f] of [...this.byName]) {
      const o = options[name] ?? {}
      const b = breakers[name]
      const sameRetry = sameJson(f.options, o)
      const sameBreaker = sameJson(f.breakerOptions, b)
      if (sameRetry && sameBreaker) continue
      if (!sameBreaker) f.dispose()
      this.byName.set(name, new UpstreamFailover(name, f.pool, o, b, this.hooks, sameBreaker ? f.breakers : undefined))
    }
    this.options = options
    this.breakers = breakers
    this.generation++
  }

  /** The options an upstream runs on now. */
  optionsOf (upstream: string): FailoverOptions { return this.options[upstream] ?? {} }

  /** The built state of an upstream, if a request (or boot) built it. */
  peek (upstream: string): UpstreamFailover | undefined { return this.byName.get(upstream) }

  dispose (): void {
    for (const f of this.byName.values()) f.dispose()
    this.byName.clear()
  }
}

/** A RouteFailover that re-merges when the registry's options moved (one integer compare per read). */
class LiveRouteFailover implements RouteFailover {
  private gen = -1
  private _policy!: RetryPolicy
  private _fallback: string | undefined
  private _hedgeDelay = 0
  constructor (
    private readonly registry: FailoverRegistry,
    private readonly upstream: string,
    private readonly override: Partial<FailoverOptions> | undefined,
    readonly fallbackResponse: FallbackResponse | undefined,
  ) {
    this.refresh()
  }

  get policy (): RetryPolicy {
    if (this.gen !== this.registry.generation) this.refresh()
    return this._policy
  }

  get fallback (): string | undefined {
    if (this.gen !== this.registry.generation) this.refresh()
    return this._fallback
  }

  get hedgeDelay (): number {
    if (this.gen !== this.registry.generation) this.refresh()
    return this._hedgeDelay
  }

  private refresh (): void {
    const base = this.registry.optionsOf(this.upstream)
    const merged = this.override === undefined ? base : { ...base, ...this.override }
    const built = this.registry.peek(this.upstream)
    // the upstream's own state always runs on the current options (reconcile rebuilds it when they change)
    this._policy = this.override === undefined && built !== undefined ? built.policy : new RetryPolicy(merged)
    this._fallback = merged.fallback
    this._hedgeDelay = merged.hedge?.delay ?? 0
    this.gen = this.registry.generation
  }
}

function sameJson (a: unknown, b: unknown): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b)
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] !== undefined) out[k] = o[k]
  return out
}
