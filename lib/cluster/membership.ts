// Cluster membership: each node heartbeats its entry into the node registry and reads everyone else's.
//
// Format: registry.ts with keys.nodes (`${cluster}:{nodes}` ZSET index + `${cluster}:{nodes}:<id>`
// STRING with PX = 3 × heartbeatInterval). A node is in the view while its key exists; a crashed
// node's key lapses, so every node drops it within the TTL plus one interval. leave() deletes
// the key and PUBLISHes `{ type: 'leave', id }` on keys.nodesChannel so the others drop it at once;
// a (re)join PUBLISHes `{ type: 'join', id }` so they pick it up without waiting an interval;
// announce() PUBLISHes `{ type: 'update', id }` after its beat so the others read the view at once.
// With Redis down (or not configured) the view decays to this node alone, and the heartbeat
// rejoins on its own when Redis answers again.
import { EventEmitter } from 'node:events'
import type { ClusterContext } from './context.js'
import { registryBeat, registryList, registryRemove } from './registry.js'
import { Ticker } from './ticker.js'

export type NodeStatus = 'ok' | 'draining'

/** One gateway node as the registry holds it. */
export interface NodeInfo {
  id: string
  /** Host or IP the node listens on. */
  address: string
  port: number
  /** Gateway software version. */
  version: string
  /** epoch-ms the node started. */
  startedAt: number
  configVersion: number
  status: NodeStatus
  /** epoch-ms of the node's last heartbeat, by its own clock. */
  lastSeen: number
  /** What the node publishes with each heartbeat (the monitor's load and traffic summary), if anything. */
  summary?: unknown
}

export type LeaveReason = 'left' | 'expired'

export interface MembershipOptions {
  self: Pick<NodeInfo, 'id' | 'address' | 'port' | 'version'> & Partial<Pick<NodeInfo, 'startedAt' | 'configVersion' | 'status'>>
  /** ms between heartbeats; the entry's TTL is 3 × this. */
  heartbeatInterval: number
}

/** TTL of a heartbeat, in heartbeat intervals (DESIGN: a node is gone after 3 intervals without one). */
export const TTL_INTERVALS = 3

/**
 * Events: 'join' (node), 'leave' (node, reason), 'change' (nodes). This node is always in
 * the view and never joins or leaves it.
 */
export class Membership extends EventEmitter {
  readonly id: string
  private readonly self: NodeInfo
  private readonly view = new Map<string, { info: NodeInfo, confirmedAt: number }>()
  /** ids announced gone: ignored in any listing that started before the announcement. */
  private readonly departed = new Map<string, number>()
  private readonly ticker: Ticker
  private unsubscribe: (() => void) | undefined
  private unResubscribed: (() => void) | undefined
  private closed = false
  private left = false
  private readonly onUp = (): void => this.ticker.trigger()
  private summaryOf: (() => unknown) | undefined
  private announceNext = false

  constructor (private readonly ctx: ClusterContext, private readonly o: MembershipOptions) {
    super()
    const now = Date.now()
    this.id = o.self.id
    this.self = { startedAt: now, configVersion: 0, status: 'ok', ...o.self, lastSeen: now }
    this.ticker = new Ticker(() => this.tick(), o.heartbeatInterval)
  }

  get ttl (): number { return this.o.heartbeatInterval * TTL_INTERVALS }

  /** The view: this node first, then the others by id. */
  nodes (): NodeInfo[] {
    const others = [...this.view.values()].map((e) => e.info).sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    return [{ ...this.self }, ...others]
  }

  get size (): number { return this.view.size + 1 }

  /** Begin heartbeating; never waits on Redis. */
  start (): void {
    if (this.closed || !this.ctx.link.enabled || this.ticker.active) return
    this.unsubscribe = this.ctx.pubsub.subscribe(this.ctx.keys.nodesChannel, (msg) => this.onMessage(msg))
    // a join or leave may have been announced while the subscriber was down
    this.unResubscribed = this.ctx.pubsub.onResubscribed(() => this.ticker.trigger())
    // (re)join as soon as Redis answers instead of at the next interval
    this.ctx.link.on('up', this.onUp)
    this.ticker.start()
  }

  /** Change what the next heartbeat carries (sent at once). */
  update (patch: Partial<Pick<NodeInfo, 'configVersion' | 'status' | 'address' | 'port'>>): void {
    Object.assign(this.self, patch)
    this.ticker.trigger()
  }

  /** Publish `fn()` with every heartbeat from now on (undefined: stop); called at each beat, so keep it cheap and small. */
  setSummary (fn: (() => unknown) | undefined): void {
    this.summaryOf = fn
  }

  /** Heartbeat now and have the other nodes read the view at once (a target's status changed, say), not at their next beat. */
  announce (): void {
    this.announceNext = true
    this.ticker.trigger()
  }

  /** Heartbeat and read the view now. */
  async refresh (): Promise<void> {
    await this.tick()
  }

  /** Graceful shutdown: stop heartbeating, delete this node's entry and tell the others at once. */
  async leave (): Promise<void> {
    if (this.left) return
    this.left = true
    await this.close()
    if (!this.ctx.link.enabled) return
    try {
      await registryRemove(this.ctx.link, this.ctx.keys.nodes, this.id)
      await this.ctx.link.call('publish leave', (c) => c.publish(this.ctx.keys.nodesChannel, JSON.stringify({ type: 'leave', id: this.id })))
    } catch {
      // Redis is down: the entry lapses within the TTL on its own (the link reported the outage)
    }
  }

  /** Stop heartbeating without removing the entry (others see this node leave when its TTL lapses). */
  async close (): Promise<void> {
    this.closed = true
    this.unsubscribe?.()
    this.unResubscribed?.()
    this.ctx.link.off('up', this.onUp)
    await this.ticker.stop()
  }

  private async tick (): Promise<void> {
    const started = Date.now()
    try {
      this.self.lastSeen = started
      if (this.summaryOf !== undefined) this.self.summary = this.summaryOf()
      const announce = this.announceNext
      this.announceNext = false
      const joined = await registryBeat(this.ctx.link, this.ctx.keys.nodes, this.id, this.self, this.ttl)
      if ((joined || announce) && !this.closed) {
        const type = joined ? 'join' : 'update'
        await this.ctx.link.call(`publish ${type}`, (c) => c.publish(this.ctx.keys.nodesChannel, JSON.stringify({ type, id: this.id })))
      }
      const listed = await registryList<NodeInfo>(this.ctx.link, this.ctx.keys.nodes)
      if (this.closed) return
      this.apply(listed, started)
    } catch {
      // Redis is down or slow (the link reported it): forget peers nobody could confirm for a TTL
      if (!this.closed) this.expire(Date.now())
    }
  }

  private apply (listed: NodeInfo[], started: number): void {
    const now = Date.now()
    const seen = new Set<string>()
    let changed = false
    for (const info of listed) {
      if (info.id === this.id) continue
      const gone = this.departed.get(info.id)
      if (gone !== undefined && gone >= started) continue
      seen.add(info.id)
      const known = this.view.get(info.id)
      this.view.set(info.id, { info, confirmedAt: now })
      if (known === undefined) { changed = true; this.emit('join', info) }
    }
    for (const [id, e] of this.view) {
      if (seen.has(id)) continue
      this.view.delete(id)
      changed = true
      // a key gone before its TTL was deleted: a leave() whose announcement has not arrived yet
      const reason: LeaveReason = now < e.info.lastSeen + this.ttl ? 'left' : 'expired'
      this.emit('leave', e.info, reason)
    }
    for (const [id, at] of this.departed) if (at < started) this.departed.delete(id)
    if (changed) this.emit('change', this.nodes())
  }

  private expire (now: number): void {
    let changed = false
    for (const [id, e] of this.view) {
      if (now - e.confirmedAt <= this.ttl) continue
      this.view.delete(id)
      changed = true
      this.emit('leave', e.info, 'expired' satisfies LeaveReason)
    }
    if (changed) this.emit('change', this.nodes())
  }

  private onMessage (raw: string): void {
    let msg: { type?: unknown, id?: unknown }
    try { msg = JSON.parse(raw) as typeof msg } catch { return }
    if (typeof msg.id !== 'string' || msg.id === this.id) return
    if (msg.type === 'join') {
      this.departed.delete(msg.id)
      this.ticker.trigger()
    } else if (msg.type === 'update') {
      // read the view now; never announce back (no echo)
      this.ticker.trigger()
    } else if (msg.type === 'leave') {
      this.departed.set(msg.id, Date.now())
      const e = this.view.get(msg.id)
      if (e === undefined) return
      this.view.delete(msg.id)
      this.emit('leave', e.info, 'left' satisfies LeaveReason)
      this.emit('change', this.nodes())
    }
  }
}
