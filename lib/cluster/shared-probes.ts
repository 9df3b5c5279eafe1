// Shared probing: a lease in Redis picks one node per upstream to run its active probes; that node
// publishes every result and the others feed it to their own state machines instead of probing.
//
// Keys (one per upstream, `<upstream>` URI-encoded so any name fits a key):
//   <cluster>:probe-lease:<upstream>   STRING holder node id, PX 3 × interval
//   <cluster>:probes                   channel: '{"upstream","target","ok","durationMs","status"?,"error"?,"from"}'
// Every node runs the lease script once per interval for each shared upstream: it takes a free lease,
// or extends its own, and learns the holder. A holder that dies stops extending, so another node takes
// over within 3 intervals (plus one of its own ticks). While this node cannot reach Redis, or has no
// fresh answer about the lease, it probes on its own: sharing saves probes, it never loses them.
// ProbeCoordinator of lib/health/active.ts.
import type { ProbeCoordinator } from '../health/active.js'
import type { ProbeResult } from '../health/probe.js'
import type { Target } from '../upstream/target.js'
import type { ClusterContext } from './context.js'
import { defineScript } from './script.js'
import { Ticker } from './ticker.js'

// KEYS[1] lease; ARGV[1] node id, ARGV[2] ttl ms. Returns the holder after this call.
export const leaseScript = defineScript('fhgProbeLease', 1, `
local holder = redis.call('GET', KEYS[1])
if not holder then
  -- free: take it
  redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
  return ARGV[1]
end
-- ours: extend it; another node's: leave it
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
return holder
`)

// KEYS[1] lease; ARGV[1] node id. Deletes the lease only if this node holds it (graceful hand-over).
export const releaseScript = defineScript('fhgProbeRelease', 1, `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

/** A probe result another node shared. */
export interface SharedProbeResult {
  upstream: string
  target: string
  result: ProbeResult
  from: string
}

interface Lease {
  readonly upstream: string
  readonly key: string
  readonly interval: number
  refs: number
  /** The holder as last learnt; undefined before the first answer. */
  holder: string | undefined
  /** The last holder reported to onHolder. */
  known: string | undefined
  /** epoch-ms of the last answer about the lease. */
  checkedAt: number
  readonly ticker: Ticker
}

export class SharedProbes implements ProbeCoordinator {
  private readonly leases = new Map<string, Lease>()
  private readonly listeners = new Set<(r: SharedProbeResult) => void>()
  private unsubscribe: (() => void) | undefined
  private readonly channel: string
  private closed = false

  constructor (private readonly ctx: ClusterContext, private readonly o: {
    nodeId: string
    /** Called when the holder of an upstream's lease changes (as this node learns it): for the log. */
    onHolder?: (upstream: string, holder: string) => void
  }) {
    this.channel = `${ctx.keys.name}:probes`
  }

  /** `fn` gets every probe result another node shares; returns the unsubscribe function. */
  onResult (fn: (r: SharedProbeResult) => void): () => void {
    this.listeners.add(fn)
    this.unsubscribe ??= this.ctx.pubsub.subscribe(this.channel, (msg) => this.receive(msg))
    return () => { this.listeners.delete(fn) }
  }

  /** Whether this node holds the lease of `upstream` now (for tests and the status view). */
  holds (upstream: string): boolean {
    return this.leases.get(upstream)?.holder === this.o.nodeId
  }

  join (upstream: string, interval: number): () => void {
    let lease = this.leases.get(upstream)
    if (lease === undefined && !this.closed) {
      const key = `${this.ctx.keys.name}:probe-lease:${encodeURIComponent(upstream)}`
      const l: Lease = { upstream, key, interval, refs: 0, holder: undefined, known: undefined, checkedAt: 0, ticker: new Ticker(async () => await this.renew(l), interval) }
      lease = l
      this.leases.set(upstream, l)
      l.ticker.start()
    }
    if (lease === undefined) return noop
    lease.refs++
    const l = lease
    let left = false
    return () => {
      if (left) return
      left = true
      if (--l.refs > 0 || this.leases.get(upstream) !== l) return
      this.leases.delete(upstream)
      void this.release(l)
    }
  }

  shouldProbe (upstream: string): boolean {
    const l = this.leases.get(upstream)
    // no fresh word about the lease (Redis down, first tick pending): probe ourselves
    if (l === undefined || l.holder === undefined || Date.now() - l.checkedAt > 2 * l.interval) return true
    return l.holder === this.o.nodeId
  }

  share (upstream: string, target: Target, result: ProbeResult): void {
    // only the holder shares: a node probing on its own (no word about the lease) keeps its results
    if (!this.holds(upstream) || !this.ctx.link.up) return
    const msg: Record<string, unknown> = { upstream, target: target.id, ok: result.ok, durationMs: result.durationMs, from: this.o.nodeId }
    if (result.status !== undefined) msg.status = result.status
    if (result.error !== undefined) msg.error = result.error
    const text = JSON.stringify(msg)
    this.ctx.link.call('probe publish', async (c) => await c.publish(this.channel, text)).catch(noop)
  }

  /** Stop renewing and hand the leases this node holds over at once. */
  async close (): Promise<void> {
    this.closed = true
    this.unsubscribe?.()
    this.unsubscribe = undefined
    this.listeners.clear()
    const leases = [...this.leases.values()]
    this.leases.clear()
    await Promise.all(leases.map(async (l) => await this.release(l)))
  }

  private async renew (l: Lease): Promise<void> {
    if (!this.ctx.link.enabled) return
    try {
      const holder = await this.ctx.link.call('probe lease', async (c) => await leaseScript(c, [l.key], [this.o.nodeId, 3 * l.interval]))
      l.holder = String(holder)
      l.checkedAt = Date.now()
      if (l.holder !== l.known) {
        l.known = l.holder
        try { this.o.onHolder?.(l.upstream, l.holder) } catch {}
      }
    } catch {
      l.holder = undefined // no word: probe on our own until Redis answers
    }
  }

  private async release (l: Lease): Promise<void> {
    await l.ticker.stop()
    if (l.holder !== this.o.nodeId || !this.ctx.link.up) return
    l.holder = undefined
    await this.ctx.link.call('probe lease release', async (c) => await releaseScript(c, [l.key], [this.o.nodeId])).catch(noop)
  }

  private receive (raw: string): void {
    let m: { upstream?: unknown, target?: unknown, ok?: unknown, durationMs?: unknown, status?: unknown, error?: unknown, from?: unknown }
    try { m = JSON.parse(raw) as typeof m } catch { return }
    if (typeof m.upstream !== 'string' || typeof m.target !== 'string' || typeof m.ok !== 'boolean' || typeof m.from !== 'string') return
    if (m.from === this.o.nodeId) return
    const result: ProbeResult = { ok: m.ok, durationMs: typeof m.durationMs === 'number' ? m.durationMs : 0 }
    if (typeof m.status === 'number') result.status = m.status
    if (typeof m.error === 'string') result.error = m.error
    const r: SharedProbeResult = { upstream: m.upstream, target: m.target, result, from: m.from }
    for (const fn of this.listeners) {
      try { fn(r) } catch {}
    }
  }
}

function noop (): void {}
