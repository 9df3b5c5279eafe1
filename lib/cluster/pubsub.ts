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
  private _connected = false
  private closed = false
  private readonly timeout: number
  private readonly onError: (err: Error) => void

  constructor (private readonly client: RedisClient | undefined, o: PubSubOptions = {}) {
    this.timeout = o.timeout ?? DEFAULT_CALL_TIMEOUT
    this.onError = o.onError ?? noop
  }

  /** True while every channel is subscribed on a live connection. */
  get connected (): boolean { return this._connected }

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
    sub.on('close', () => { this._connected = false })
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
      for (const fn of this.resubscribed) {
        try { fn() } catch (err) { this.onError(err as Error) }
      }
    }, (err: Error) => this.onError(err))
  }

  private send (command: 'subscribe' | 'unsubscribe', channels: string[]): void {
    const sub = this.sub
    if (sub === undefined) return
    withDeadline(sub[command](...channels), this.timeout, command).catch((err: Error) => this.onError(err))
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
