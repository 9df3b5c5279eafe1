// What the limiter does while its store (Redis) fails: the onStoreError policy, the degraded state,
// a short circuit so a dead or hung Redis costs requests nothing, and recovery by probing.
import type { Decision, LimitRule, RateLimitStore } from './types.js'

export const STORE_ERROR_POLICIES = ['fail_open', 'fail_closed', 'local'] as const
export type StoreErrorPolicy = typeof STORE_ERROR_POLICIES[number]

/** A decision and where it came from; store decisions carry no `source`. */
export interface Outcome extends Decision {
  readonly source?: 'open' | 'closed' | 'local'
}

/** fail_open: the request passes undecided (no headers). */
export const FAIL_OPEN: Outcome = Object.freeze({ allowed: true, limit: 0, remaining: 0, resetMs: 0, retryAfterMs: 0, source: 'open' })
/** fail_closed: the request is refused with 503; Retry-After 1 s. */
export const FAIL_CLOSED: Outcome = Object.freeze({ allowed: false, limit: 0, remaining: 0, resetMs: 1000, retryAfterMs: 1000, source: 'closed' })

/** Store decisions between two samples of the live node count (policy local's share). */
const SAMPLE_EVERY = 64
/** Most keys whose last refusal by the store is remembered; past it the memory starts over. */
export const REFUSALS_KEPT = 10_000

/** The store's last word on a key it refused: refused for `cost` units or more until `until` (guard clock). */
interface Refusal { until: number, cost: number, limit: number, resetAt: number }

export interface OutageLogger {
  warn (obj: object, msg: string): void
  info (obj: object, msg: string): void
}

export interface StoreGuardOptions {
  policy?: StoreErrorPolicy
  /** The in-memory limiter of policy `local`. */
  localStore?: RateLimitStore
  /** Live gateway nodes, for `local` (limit ÷ nodes); 1 when absent. */
  liveNodes?: () => number
  /** Consecutive failures before the store is skipped (short circuit). Default 3. */
  tripAfter?: number
  /** ms between probe calls while the store is skipped. Default 200: recovery within 1 s of Redis returning. */
  probeInterval?: number
  /** ms between two "still degraded" log lines. Default 10 s. */
  logInterval?: number
  log?: OutageLogger
  now?: () => number
  /** Metric hooks. */
  onError?: (err: unknown) => void
  onDegraded?: (degraded: boolean) => void
  onDuration?: (seconds: number) => void
}

/**
 * Wraps store calls. A failure (a rejection: Redis down, deadline passed) applies the policy to that
 * request and marks the store degraded; after `tripAfter` failures in a row the store is skipped and
 * one call every `probeInterval` probes it; the first success ends the degraded state.
 */
export class StoreGuard {
  readonly policy: StoreErrorPolicy
  degraded = false
  degradedSince = 0
  private consecutive = 0
  private open = false
  private probing = false
  private nextProbeAt = 0
  private errorsSinceLog = 0
  private lastLogAt = 0
  private lastError = ''
  /** The last failure seen: the decisions of one failed batch share one error object, and count as one failure. */
  private lastErr: unknown = undefined
  /** Live nodes seen while the store worked (sampled every SAMPLE_EVERY decisions) or at degradation. */
  private knownNodes = 1
  private untilSample = 0
  /**
   * Keys the store refused, until its Retry-After: while the store fails, a request for one of them is refused as the
   * store would (nothing can free units of an exact key before then), whatever the policy; the policy decides the rest.
   */
  private readonly refusals = new Map<string, Refusal>()
  private readonly o: StoreGuardOptions
  private readonly now: () => number
  private readonly tripAfter: number
  private readonly probeInterval: number

  constructor (o: StoreGuardOptions = {}) {
    this.o = o
    this.policy = o.policy ?? 'fail_open'
    if (this.policy === 'local' && o.localStore === undefined) throw new TypeError('onStoreError local needs an in-memory store')
    this.now = o.now ?? Date.now
    this.tripAfter = Math.max(1, o.tripAfter ?? 3)
    this.probeInterval = o.probeInterval ?? 200
  }

  /**
   * Decide through `store`, or by the policy when it fails or is skipped. Never rejects. `timed`: report the
   * call's duration (false for lease mode, whose calls mostly never leave the process).
   */
  consume (store: RateLimitStore, key: string, rule: LimitRule, cost: number, timed = true): Promise<Outcome> {
    if (this.skip()) return this.fallback(key, rule, cost)
    const onDuration = timed ? this.o.onDuration : undefined
    const t0 = onDuration === undefined ? 0 : performance.now()
    return store.consume(key, rule, cost).then((d) => {
      onDuration?.((performance.now() - t0) / 1000)
      if (!d.allowed && d.retryAfterMs > 0) this.refused(key, cost, d)
      if (this.consecutive !== 0 || this.degraded) this.success()
      if (--this.untilSample <= 0) this.sampleNodes()
      return d
    }, (err: unknown) => {
      onDuration?.((performance.now() - t0) / 1000)
      this.failure(err)
      return this.fallback(key, rule, cost)
    })
  }

  /**
   * The decision now, without a promise, when the store can give it without I/O (a lease with units left, the
   * memory store); undefined: call consume(). Never while the store is skipped (the policy applies there).
   */
  consumeNow (store: RateLimitStore, key: string, rule: LimitRule, cost: number): Outcome | undefined {
    if (this.open || store.consumeNow === undefined) return undefined
    const d = store.consumeNow(key, rule, cost)
    if (d !== undefined && (this.consecutive !== 0 || this.degraded)) this.success()
    return d
  }

  /** Probe at the next call (e.g. on the client's `ready`): recovery without waiting for the interval. */
  probeNow (): void { this.nextProbeAt = 0 }

  /**
   * The local limiter's share of a rule: limit ÷ live nodes, at least 1 unit. Live nodes: the most seen lately or now;
   * the cluster view itself decays to this node alone while Redis is down, which would hand each node the whole limit.
   */
  localRule (rule: LimitRule): LimitRule {
    const live = Math.floor(this.o.liveNodes?.() ?? 1)
    const n = live < 1 ? 1 : Math.max(live, this.knownNodes) // 0: no cluster, one node
    return n === 1 ? rule : { algorithm: rule.algorithm, limit: Math.max(1, Math.floor(rule.limit / n)), window: rule.window }
  }

  /** Remember the live nodes while the store works: the share of policy local is taken from the cluster before the outage. */
  private sampleNodes (): void {
    this.untilSample = SAMPLE_EVERY
    if (this.o.liveNodes !== undefined) this.knownNodes = Math.max(1, Math.floor(this.o.liveNodes()))
  }

  private skip (): boolean {
    if (!this.open) return false
    if (this.probing || this.now() < this.nextProbeAt) return true
    this.probing = true // this call is the probe
    return false
  }

  /** Remember the store's refusal of `key` until its Retry-After. */
  private refused (key: string, cost: number, d: Decision): void {
    if (this.policy === 'fail_closed') return // refuses anyway
    if (this.refusals.size >= REFUSALS_KEPT && !this.refusals.has(key)) this.refusals.clear()
    const now = this.now()
    this.refusals.set(key, { until: now + d.retryAfterMs, cost, limit: d.limit, resetAt: now + d.resetMs })
  }

  private fallback (key: string, rule: LimitRule, cost: number): Promise<Outcome> {
    const r = this.refusals.get(key)
    if (r !== undefined) {
      const now = this.now()
      if (now < r.until && cost >= r.cost) {
        // the store's own answer still stands: a refusal, never an admission over the limit
        return Promise.resolve({ allowed: false, limit: r.limit, remaining: 0, resetMs: Math.max(0, r.resetAt - now), retryAfterMs: r.until - now })
      }
      if (now >= r.until) this.refusals.delete(key)
    }
    if (this.policy === 'fail_open') return Promise.resolve(FAIL_OPEN)
    if (this.policy === 'fail_closed') return Promise.resolve(FAIL_CLOSED)
    const local = this.localRule(rule)
    return this.o.localStore!.consume(key, local, Math.min(cost, local.limit)).then(
      (d) => ({ ...d, source: 'local' as const }),
      () => FAIL_OPEN, // the in-memory store does not fail; if it did, do not refuse for it
    )
  }

  private success (): void {
    this.lastErr = undefined
    this.consecutive = 0
    this.open = false
    this.probing = false
    if (!this.degraded) return
    const now = this.now()
    this.degraded = false
    this.o.onDegraded?.(false)
    this.o.log?.info({ degradedMs: now - this.degradedSince, errors: this.errorsSinceLog, policy: this.policy }, 'rate-limit store recovered')
    this.errorsSinceLog = 0
  }

  private failure (err: unknown): void {
    const now = this.now()
    this.consecutive++ // per decision: a batch of 3 that failed trips the short circuit as 3 calls would
    this.probing = false
    if (this.consecutive >= this.tripAfter) {
      this.open = true
      this.nextProbeAt = now + this.probeInterval
    }
    // one store call failed, however many decisions it carried (they share its error): one store error
    if (err === this.lastErr && typeof err === 'object' && err !== null) return
    this.lastErr = err
    this.o.onError?.(err)
    this.errorsSinceLog++
    const waited = (err as { waitedMs?: number } | undefined)?.waitedMs
    this.lastError = (err instanceof Error ? err.message : String(err)) + (waited === undefined ? '' : ` (waited ${waited.toFixed(0)} ms)`)
    if (!this.degraded) {
      this.degraded = true
      this.degradedSince = now
      // policy local counts from the moment of degradation: nothing left over from an earlier outage
      this.o.localStore?.clear?.()
      if (this.o.liveNodes !== undefined) this.knownNodes = Math.max(this.knownNodes, Math.floor(this.o.liveNodes()))
      this.o.onDegraded?.(true)
      this.logDegraded(now, 'rate-limit store failing: applying onStoreError policy')
    } else if (now - this.lastLogAt >= (this.o.logInterval ?? 10_000)) {
      this.logDegraded(now, 'rate-limit store still failing')
    }
  }

  private logDegraded (now: number, msg: string): void {
    this.o.log?.warn({ policy: this.policy, error: this.lastError, errors: this.errorsSinceLog, degradedMs: now - this.degradedSince }, msg)
    this.lastLogAt = now
  }
}
