import { EventEmitter } from 'node:events'
import { createBalancer } from '../balancers/index.js'
import { loadTls, type TlsConnectOptions, type UpstreamTlsSpec } from './tls.js'
import type { Balancer, Strategy } from '../balancers/types.js'
import { compileHashOn, type HashKeyFn } from '../proxy/hash-key.js'
import { UpstreamPool } from './pool.js'
import type { Target, TargetSpec } from './target.js'

/** How one try on a target ended, as observers see it. */
export interface TryResult {
  /** Response status; 0 when no response came. */
  statusCode: number
  error: Error | undefined
  /** The gateway cancelled the try (client left, hedge lost): says nothing about the target. */
  aborted: boolean
}

/**
 * Watches every try on an upstream (passive health, breakers). Called synchronously on the
 * request path: keep it O(1) and allocation free.
 */
export interface TryObserver {
  onTryStart? (target: Target, now: number): void
  onTryEnd? (target: Target, result: TryResult, now: number): void
}

export interface UpstreamTimeouts {
  /** ms to establish a connection (Agent level) */
  connect: number
  /** ms from dispatch to response headers */
  headers: number
  /** ms of silence allowed between body chunks */
  body: number
}

export interface UpstreamSpec {
  strategy?: Strategy
  hashOn?: string
  targets: TargetSpec[]
  timeouts?: Partial<UpstreamTimeouts>
  /** TLS to https targets (private CA, client certificate). */
  tls?: UpstreamTlsSpec
  /** Offer HTTP/2 to https targets (ALPN; undici allowH2). */
  http2?: boolean
}

export const DEFAULT_TIMEOUTS: UpstreamTimeouts = { connect: 5_000, headers: 30_000, body: 30_000 }

/**
 * One named upstream: its pool and the settings routes inherit. The object is
 * stable across reconfiguration (fields change, identity stays), so a route
 * keeps a reference and checks `generation` to see whether to re-resolve.
 */
export class UpstreamEntry {
  readonly name: string
  readonly pool: UpstreamPool
  strategy: Strategy = 'round_robin'
  hashOn = 'ip'
  hashKey: HashKeyFn = compileHashOn('ip')
  timeouts: UpstreamTimeouts = { ...DEFAULT_TIMEOUTS }
  /** Connect options of https targets (files read when configured); undefined: system CAs, no client certificate. */
  tls: TlsConnectOptions | undefined = undefined
  http2 = false
  /** Bumps when strategy/hashOn/timeouts change or the upstream is removed. */
  generation = 0
  removed = false
  private readonly balancers = new Map<Strategy, Balancer>()
  /** Observers of every try on this upstream; the load balancer calls them. */
  readonly observers: TryObserver[] = []

  constructor (name: string, pool: UpstreamPool) {
    this.name = name
    this.pool = pool
  }

  /** The balancer instance for a strategy, one per (upstream, strategy): state like a WRR cursor is shared by routes. */
  balancer (strategy: Strategy = this.strategy): Balancer {
    let b = this.balancers.get(strategy)
    if (b === undefined) {
      b = createBalancer(strategy)
      this.balancers.set(strategy, b)
    }
    return b
  }

  configure (spec: Omit<UpstreamSpec, 'targets'>, defaults: UpstreamTimeouts): void {
    this.strategy = spec.strategy ?? 'round_robin'
    this.hashOn = spec.hashOn ?? 'ip'
    this.hashKey = compileHashOn(this.hashOn)
    this.timeouts = { ...defaults, ...stripUndefined(spec.timeouts ?? {}) }
    this.tls = loadTls(spec.tls)
    this.http2 = spec.http2 === true
    this.generation++
  }
}

/**
 * All upstreams of a gateway node. Framework free: the load-balancer plugin
 * exposes it as `fastify.loadBalancer`, config sync reconciles it.
 */
export class UpstreamRegistry extends EventEmitter {
  private readonly entries = new Map<string, UpstreamEntry>()
  defaultTimeouts: UpstreamTimeouts

  constructor (defaults: Partial<UpstreamTimeouts> = {}) {
    super()
    this.defaultTimeouts = { ...DEFAULT_TIMEOUTS, ...stripUndefined(defaults) }
  }

  get (name: string): UpstreamEntry | undefined { return this.entries.get(name) }
  has (name: string): boolean { return this.entries.has(name) }
  names (): string[] { return [...this.entries.keys()] }
  [Symbol.iterator] (): IterableIterator<UpstreamEntry> { return this.entries.values() }

  /** Add an upstream, or reconfigure it in place when it exists (targets reconciled, live state kept). */
  upsert (name: string, spec: UpstreamSpec): UpstreamEntry {
    let entry = this.entries.get(name)
    if (entry === undefined) {
      entry = new UpstreamEntry(name, new UpstreamPool(name))
      entry.configure(spec, this.defaultTimeouts)
      for (const t of spec.targets) entry.pool.add(t)
      this.entries.set(name, entry)
      this.emit('added', entry)
    } else {
      entry.configure(spec, this.defaultTimeouts)
      entry.pool.reconcile(spec.targets)
      this.emit('updated', entry)
    }
    return entry
  }

  remove (name: string): boolean {
    const entry = this.entries.get(name)
    if (entry === undefined) return false
    this.entries.delete(name)
    entry.removed = true
    entry.generation++
    this.emit('removed', entry)
    return true
  }

  /** Make the set of upstreams equal to `specs`. */
  reconcile (specs: Record<string, UpstreamSpec>): void {
    for (const name of [...this.entries.keys()]) {
      if (!(name in specs)) this.remove(name)
    }
    for (const [name, spec] of Object.entries(specs)) this.upsert(name, spec)
  }
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}
