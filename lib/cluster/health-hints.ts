// Cluster-shared health: a node that ejects a target or opens its circuit tells the others, as a hint with an expiry.
//
// Wire: PUBLISH `${cluster}:health` '{"upstream":"users","target":"users-1","kind":"ejected","ttl":5000,"from":"gw-1"}'
// `ttl` is ms left at publish time; the receiver sets `until` = its own now + ttl (capped by
// maxTtl), so no node trusts another node's clock. Delivery is fire-and-forget: a node that
// misses a hint simply finds out by its own failures.
// Each node's own verdicts still rule: a hint can only keep a target out until its expiry
// (applyHint raises `ejectedUntil`, never lowers it), never re-admits one, and never changes
// the status of the target's active health checks.
import type { ClusterContext } from './context.js'
import type { Target } from '../upstream/target.js'

export type HintKind = 'ejected' | 'circuit_open'

export interface HealthHint {
  upstream: string
  target: string
  kind: HintKind
  /** epoch-ms, by the receiving node's clock */
  until: number
  /** id of the node that published it */
  from: string
}

export interface HealthHintsOptions {
  /** This node's id: its own hints are not delivered back to it. */
  nodeId: string
  /** ms; the longest a hint may keep a target out, whatever the sender asked. Default 60 s. */
  maxTtl?: number
  onError?: (err: Error) => void
}

export type HintListener = (hint: HealthHint) => void

const KINDS = new Set<string>(['ejected', 'circuit_open'])

export class HealthHints {
  private readonly listeners = new Set<HintListener>()
  private unsubscribe: (() => void) | undefined
  private readonly maxTtl: number
  private readonly onError: (err: Error) => void

  constructor (private readonly ctx: ClusterContext, private readonly o: HealthHintsOptions) {
    this.maxTtl = o.maxTtl ?? 60_000
    this.onError = o.onError ?? (() => {})
  }

  start (): void {
    if (this.unsubscribe !== undefined || !this.ctx.link.enabled) return
    this.unsubscribe = this.ctx.pubsub.subscribe(this.ctx.keys.health, (msg) => this.receive(msg))
  }

  /** `fn` gets every live hint from another node; returns the unsubscribe function. */
  onHint (fn: HintListener): () => void {
    this.listeners.add(fn)
    return () => { this.listeners.delete(fn) }
  }

  /** Tell the other nodes; resolves whether it was sent (never rejects). `until` is epoch-ms, local clock. */
  async publish (hint: { upstream: string, target: string, kind: HintKind, until: number }, now = Date.now()): Promise<boolean> {
    const ttl = Math.min(Math.round(hint.until - now), this.maxTtl)
    if (!(ttl > 0) || !this.ctx.link.enabled) return false
    const msg = JSON.stringify({ upstream: hint.upstream, target: hint.target, kind: hint.kind, ttl, from: this.o.nodeId })
    try {
      await this.ctx.link.call('health publish', (c) => c.publish(this.ctx.keys.health, msg))
      return true
    } catch {
      return false
    }
  }

  async close (): Promise<void> {
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.listeners.clear()
  }

  private receive (raw: string): void {
    const now = Date.now()
    let m: { upstream?: unknown, target?: unknown, kind?: unknown, ttl?: unknown, from?: unknown }
    try { m = JSON.parse(raw) as typeof m } catch { return }
    if (typeof m.upstream !== 'string' || typeof m.target !== 'string' || typeof m.kind !== 'string' || !KINDS.has(m.kind)) return
    if (typeof m.from !== 'string' || m.from === this.o.nodeId) return
    const ttl = Math.min(Number(m.ttl), this.maxTtl)
    if (!(ttl > 0)) return
    const hint: HealthHint = { upstream: m.upstream, target: m.target, kind: m.kind as HintKind, until: now + ttl, from: m.from }
    for (const fn of this.listeners) {
      try { fn(hint) } catch (err) { this.onError(err as Error) }
    }
  }
}

/**
 * Apply a hint to a target (lib/upstream/target.ts): keep it out until `hint.until`.
 * Resolves whether eligibility changed (the target announced it to its pool).
 */
export function applyHint (target: Pick<Target, 'ejectedUntil' | 'eject'>, hint: HealthHint, now = Date.now()): boolean {
  if (hint.until <= now || hint.until <= target.ejectedUntil) return false
  target.eject(hint.until)
  return true
}
