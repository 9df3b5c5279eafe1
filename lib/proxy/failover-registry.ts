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
  readonly policy: RetryPolicy
  readonly budget: RetryBudget
  readonly breakers: PoolBreakers | undefined

  constructor (name: string, pool: UpstreamPool, options: FailoverOptions, breaker: CircuitBreakerOptions | undefined, hooks: FailoverHooks) {
    this.name = name
    this.pool = pool
    this.options = options
    this.policy = new RetryPolicy(options)
    this.budget = new RetryBudget({
      budgetPercent: options.budgetPercent,
      minRetryConcurrency: options.minRetryConcurrency,
      onExhausted: () => hooks.onBudgetExhausted?.(name),
    })
    this.breakers = breaker === undefined ? undefined : new PoolBreakers(pool, breaker, { onEvent: hooks.onCircuitEvent })
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
 * and rebuilt when an upstream's pool object changes (removed and added again).
 */
export class FailoverRegistry {
  private readonly byName = new Map<string, UpstreamFailover>()
  constructor (
    private readonly options: Record<string, FailoverOptions>,
    private readonly breakers: Record<string, CircuitBreakerOptions>,
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

  /** A route's failover: the upstream's options with the route's keys on top. */
  forRoute (upstream: string, override: FailoverOptions | undefined, fallbackResponse: FallbackResponse | undefined): RouteFailover {
    const base = this.options[upstream] ?? {}
    const merged = override === undefined ? base : { ...base, ...stripUndefined(override) }
    return {
      policy: override === undefined && this.byName.has(upstream) ? this.byName.get(upstream)!.policy : new RetryPolicy(merged),
      fallback: merged.fallback,
      hedgeDelay: merged.hedge?.delay ?? 0,
      fallbackResponse,
    }
  }

  dispose (): void {
    for (const f of this.byName.values()) f.dispose()
    this.byName.clear()
  }
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] !== undefined) out[k] = o[k]
  return out
}
