// One subscriber connection (a duplicate of the client) shared by the config, cache, health and registry channels.
import { Cluster } from 'ioredis'
import type { RedisClient } from './redis-connection.js'
import { withDeadline, DEFAULT_CALL_TIMEOUT } from './redis-link.js'

export type MessageHandler = (message: string, channel: string) => void

export interface PubSubOptions {
  /** ms; deadline of SUBSCRIBE / UNSUBSCRIBE. */
  timeout?: number
  onError?: (err: Error) => void
}

/**
 * Channels are (re)subscribed on every 'ready' of the subscriber connection, so a reconnect
 * (or a Sentinel failover) resumes delivery on its own. Messages published while the
 * connection was down are lost: `onResubscribed` listeners run after each (re)subscription
 * so their owners can pull what they missed.
 * With no client, subscribe() only records handlers and nothing is ever delivered.
 */
export class PubSub {
  private sub: RedisClient | undefined
  private readonly handlers = new Map<string, Set<MessageHandler>>()
  private readonly resubscribed = new Set<() => void>()
  /** Channels Redis confirmed on the current connection. */
  private readonly live = new Set<string>()
  private _connected = false
  private closed = false
  private readonly timeout: number
  private readonly onError: (err: Error) => void

  constructor (private readonly client: RedisClient | undefined, o: PubSubOptions = {}) {
    this.timeout = o.timeout ?? DEFAULT_CALL_TIMEOUT
    this.onError = o.onError ?? noop
  }

  /** True while the subscriber connection is up and its channels were (re)subscribed. */
  get connected (): boolean { return this._connected }

  /** True while messages on `channel` reach this node (Redis confirmed the subscription on the live connection). */
  isSubscribed (channel: string): boolean { return this._connected && this.live.has(channel) }

  /** Call `handler` for each message on `channel`; returns the unsubscribe function. */
  subscribe (channel: string, handler: MessageHandler): () => void {
    let set = this.handlers.get(channel)
    if (set === undefined) {
      set = new Set()
      this.handlers.set(channel, set)
      if (this._connected) this.send('subscribe', [channel])
    }
    set.add(handler)
    this.ensureConnection()
    return () => {
      const s = this.handlers.get(channel)
      if (s === undefined || !s.delete(handler) || s.size > 0) return
      this.handlers.delete(channel)
      if (this._connected) this.send('unsubscribe', [channel])
    }
  }

  /** `fn` runs after each (re)subscription, i.e. after a window in which messages may have been lost. */
  onResubscribed (fn: () => void): () => void {
    this.resubscribed.add(fn)
    return () => { this.resubscribed.delete(fn) }
  }

  async close (): Promise<void> {
    this.closed = true
    this._connected = false
    this.live.clear()
    this.handlers.clear()
    this.resubscribed.clear()
    // a subscriber connection has nothing to flush: disconnect at once
    this.sub?.disconnect()
    this.sub = undefined
  }

  private ensureConnection (): void {
    if (this.sub !== undefined || this.client === undefined || this.closed) return
    const c = this.client
    const sub: RedisClient = c instanceof Cluster ? c.duplicate() : c.duplicate()
    this.sub = sub
    // connection errors repeat on every reconnect and the main client reports them already
    sub.on('error', noop)
    sub.on('message', (channel: string, message: string) => this.deliver(channel, message))
    sub.on('ready', () => { this.resubscribeAll() })
    sub.on('close', () => { this._connected = false; this.live.clear() })
    if (sub.status === 'wait') sub.connect().catch(noop)
  }

  private resubscribeAll (): void {
    const sub = this.sub
    const channels = [...this.handlers.keys()]
    if (sub === undefined || this.closed) return
    const done = channels.length === 0 ? Promise.resolve(0) : withDeadline(sub.subscribe(...channels), this.timeout, 'subscribe')
    done.then(() => {
      if (this.sub !== sub || sub.status !== 'ready') return
      this._connected = true
      for (const c of channels) this.live.add(c)
      // channels added or dropped while that SUBSCRIBE was in flight (subscribe() only sends once connected)
      const added = [...this.handlers.keys()].filter((c) => !channels.includes(c))
      const dropped = channels.filter((c) => !this.handlers.has(c))
      // their owners may have missed messages until then, as after a reconnect: tell them again once subscribed
      if (added.length > 0) this.send('subscribe', added, () => this.notifyResubscribed())
      if (dropped.length > 0) this.send('unsubscribe', dropped)
      this.notifyResubscribed()
    }, (err: Error) => this.onError(err))
  }

  private notifyResubscribed (): void {
    for (const fn of this.resubscribed) {
      try { fn() } catch (err) { this.onError(err as Error) }
    }
  }

  private send (command: 'subscribe' | 'unsubscribe', channels: string[], then?: () => void): void {
    const sub = this.sub
    if (sub === undefined) return
    if (command === 'unsubscribe') for (const c of channels) this.live.delete(c)
    withDeadline(sub[command](...channels), this.timeout, command).then(() => {
      if (command === 'subscribe' && this.sub === sub && this._connected) for (const c of channels) if (this.handlers.has(c)) this.live.add(c)
      then?.()
    }, (err: Error) => this.onError(err))
  }

  private deliver (channel: string, message: string): void {
    const set = this.handlers.get(channel)
    if (set === undefined) return
    for (const h of set) {
      try { h(message, channel) } catch (err) { this.onError(err as Error) }
    }
  }
}

function noop (): void {}
