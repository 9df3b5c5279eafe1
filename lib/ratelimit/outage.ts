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

/** The failure state of one shard of the store (Redis Cluster: one master; else the one store). */
class Shard {
  degraded = false
  degradedSince = 0
  consecutive = 0
  open = false
  probing = false
  nextProbeAt = 0
  errorsSinceLog = 0
  lastLogAt = 0
  lastError = ''
  /** The last failure seen: the decisions of one failed batch share one error object, and count as one failure. */
  lastErr: unknown = undefined
  /** Guard clock ms of the last decision asked of it. */
  lastSeen = 0
  /** Dropped from the guard (no key maps to it anymore): what its calls still in flight report is ignored. */
  detached = false
  constructor (readonly name: string) {}
}

/** ms without a decision after which a failing Redis Cluster shard is dropped: its slots moved to another master. */
const STALE_SHARD_MS = 1000

/**
 * Wraps store calls. A failure (a rejection: Redis down, deadline passed) applies the policy to that
 * request and marks the store degraded; after `tripAfter` failures in a row the store is skipped and
 * one call every `probeInterval` probes it; the first success ends the degraded state.
 * All of it per shard (store.shardOf: the master of the key's slot on Redis Cluster): a dead master degrades the
 * keys it holds, and the others are still decided by Redis.
 */
export class StoreGuard {
  readonly policy: StoreErrorPolicy
  /** When the first shard of the ones failing now degraded. */
  degradedSince = 0
  /** The shard of stores with one ('' or no shardOf). */
  private readonly single = new Shard('')
  /** Shards of Redis Cluster masters, by name; a failing one no key maps to anymore is dropped. */
  private readonly shards = new Map<string, Shard>()
  private degradedShards = 0
  private nextSweep = 0
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

  /** True while some shard of the store fails and the policy applies to its keys. */
  get degraded (): boolean {
    return this.degradedShards > 0
  }

  /** Shards failing now (their names: host:port of Redis Cluster masters, '' for the one store). */
  get degradedShardNames (): string[] {
    const out = this.single.degraded ? [''] : []
    for (const s of this.shards.values()) if (s.degraded) out.push(s.name)
    return out
  }

  private shardOf (store: RateLimitStore, key: string): Shard {
    const name = store.shardOf === undefined ? '' : store.shardOf(key)
    if (name === '') return this.single
    let s = this.shards.get(name)
    if (s === undefined) {
      s = new Shard(name)
      this.shards.set(name, s)
    }
    if (this.degradedShards > 0) {
      const now = this.now()
      s.lastSeen = now
      if (now >= this.nextSweep) this.sweep(now)
    }
    return s
  }

  /**
   * A failing master whose slots went to a replica (a failover) gets no more decisions: after STALE_SHARD_MS without
   * one it is dropped, and no longer counts as degraded.
   */
  private sweep (now: number): void {
    this.nextSweep = now + this.probeInterval
    for (const s of this.shards.values()) {
      if (!s.degraded || now - s.lastSeen < STALE_SHARD_MS) continue
      this.shards.delete(s.name)
      s.detached = true
      s.degraded = false
      if (--this.degradedShards === 0) this.recovered()
      this.o.log?.info({ degradedMs: now - s.degradedSince, errors: s.errorsSinceLog, policy: this.policy, shard: s.name }, 'rate-limit store shard holds no key anymore (failover): dropped')
    }
  }

  /**
   * Decide through `store`, or by the policy when it fails or is skipped. Never rejects. `timed`: report the
   * call's duration (false for lease mode, whose calls mostly never leave the process).
   */
  consume (store: RateLimitStore, key: string, rule: LimitRule, cost: number, timed = true): Promise<Outcome> {
    const shard = this.shardOf(store, key)
    if (this.skip(shard)) return this.fallback(key, rule, cost)
    const onDuration = timed ? this.o.onDuration : undefined
    const t0 = onDuration === undefined ? 0 : performance.now()
    return store.consume(key, rule, cost).then((d) => {
      onDuration?.((performance.now() - t0) / 1000)
      if (!d.allowed && d.retryAfterMs > 0) this.refused(key, cost, d)
      if (shard.consecutive !== 0 || shard.degraded) this.success(shard)
      if (--this.untilSample <= 0) this.sampleNodes()
      return d
    }, (err: unknown) => {
      onDuration?.((performance.now() - t0) / 1000)
      this.failure(shard, err)
      return this.fallback(key, rule, cost)
    })
  }

  /**
   * The decision now, without a promise, when the store can give it without I/O (a lease with units left, the
   * memory store); undefined: call consume(). Never while the store is skipped (the policy applies there).
   */
  consumeNow (store: RateLimitStore, key: string, rule: LimitRule, cost: number): Outcome | undefined {
    if (store.consumeNow === undefined) return undefined
    const shard = this.degradedShards === 0 ? undefined : this.shardOf(store, key)
    if (shard?.open === true) return undefined
    const d = store.consumeNow(key, rule, cost)
    if (d !== undefined && shard !== undefined && (shard.consecutive !== 0 || shard.degraded)) this.success(shard)
    return d
  }

  /** Probe at the next call (e.g. on the client's `ready`): recovery without waiting for the interval. */
  probeNow (): void {
    this.single.nextProbeAt = 0
    for (const s of this.shards.values()) s.nextProbeAt = 0
  }

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

  private skip (s: Shard): boolean {
    if (!s.open) return false
    if (s.probing || this.now() < s.nextProbeAt) return true
    s.probing = true // this call is the probe
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

  private success (s: Shard): void {
    if (s.detached) return
    s.lastErr = undefined
    s.consecutive = 0
    s.open = false
    s.probing = false
    if (s.degraded) {
      const now = this.now()
      s.degraded = false
      if (--this.degradedShards === 0) this.recovered()
      this.o.log?.info({ degradedMs: now - s.degradedSince, errors: s.errorsSinceLog, policy: this.policy, ...shardField(s) }, 'rate-limit store recovered')
      s.errorsSinceLog = 0
    }
  }

  /** No shard fails any more. */
  private recovered (): void {
    this.o.localStore?.recovered?.()
    this.o.onDegraded?.(false)
  }

  private failure (s: Shard, err: unknown): void {
    if (s.detached) return
    const now = this.now()
    s.consecutive++ // per decision: a batch of 3 that failed trips the short circuit as 3 calls would
    s.probing = false
    if (s.consecutive >= this.tripAfter) {
      s.open = true
      s.nextProbeAt = now + this.probeInterval
    }
    // one store call failed, however many decisions it carried (they share its error): one store error
    if (err === s.lastErr && typeof err === 'object' && err !== null) return
    s.lastErr = err
    this.o.onError?.(err)
    s.errorsSinceLog++
    const waited = (err as { waitedMs?: number } | undefined)?.waitedMs
    s.lastError = (err instanceof Error ? err.message : String(err)) + (waited === undefined ? '' : ` (waited ${waited.toFixed(0)} ms)`)
    if (!s.degraded) {
      s.degraded = true
      s.degradedSince = now
      s.lastSeen = now
      if (this.degradedShards++ === 0) {
        this.degradedSince = now
        // policy local counts from the moment of degradation: nothing left over from an earlier outage
        this.o.localStore?.clear?.()
        this.o.onDegraded?.(true)
      }
      if (this.o.liveNodes !== undefined) this.knownNodes = Math.max(this.knownNodes, Math.floor(this.o.liveNodes()))
      this.logDegraded(s, now, 'rate-limit store failing: applying onStoreError policy')
    } else if (now - s.lastLogAt >= (this.o.logInterval ?? 10_000)) {
      this.logDegraded(s, now, 'rate-limit store still failing')
    }
  }

  private logDegraded (s: Shard, now: number, msg: string): void {
    this.o.log?.warn({ policy: this.policy, error: s.lastError, errors: s.errorsSinceLog, degradedMs: now - s.degradedSince, ...shardField(s) }, msg)
    s.lastLogAt = now
  }
}

/** The shard in a log line: Redis Cluster's master (none for the one store). */
function shardField (s: Shard): { shard?: string } {
  return s.name === '' ? {} : { shard: s.name }
}
