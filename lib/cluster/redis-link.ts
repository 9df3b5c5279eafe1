// Every Redis call of the cluster core goes through a RedisLink: a deadline of its own, and an up/down verdict.
import { EventEmitter } from 'node:events'
import { GatewayError } from '../errors.js'
import type { RedisClient } from './redis-connection.js'

/** ms; REDIS.md: Cluster clients retried past their commandTimeout, so a call gets a deadline of its own. */
export const DEFAULT_CALL_TIMEOUT = 500

/**
 * Reject `p` after `ms`. The late settlement of `p` is swallowed, so a call that
 * lost the race never becomes an unhandled rejection.
 */
export function withDeadline<T> (p: Promise<T>, ms: number, what = 'redis call'): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new GatewayError('REDIS_UNAVAILABLE', `${what} timed out after ${ms} ms`)), ms)
    timer.unref()
  })
  p.catch(noop)
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

/** Redis answered with an error (WRONGTYPE, a script error...): the link is up, the call is wrong. */
export function isReplyError (err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError'
}

export interface RedisLinkOptions {
  /** ms; the deadline of every call. */
  timeout?: number
  /** Called once per up -> down change with the error that caused it. */
  onError?: (err: Error) => void
}

/**
 * Wraps one client. Emits 'down' (err) and 'up' on changes only; `up` starts false until the client
 * is ready or a call succeeds ('down' is emitted once even before any 'up'). With no client at all the link is permanently down and calls reject at once.
 * One link can be shared by every component so the node has one `redis_up` verdict.
 */
export class RedisLink extends EventEmitter {
  readonly client: RedisClient | undefined
  readonly timeout: number
  private state: 'unknown' | 'up' | 'down' = 'unknown'
  private readonly onError: (err: Error) => void

  constructor (client: RedisClient | undefined, o: RedisLinkOptions = {}) {
    super()
    this.client = client
    this.timeout = o.timeout ?? DEFAULT_CALL_TIMEOUT
    this.onError = o.onError ?? noop
    if (client?.status === 'ready') this.state = 'up'
    // connection events give the verdict before any call fails; components re-sync on 'up'
    client?.on('ready', this.onReady)
    client?.on('close', this.onClose)
  }

  private readonly onReady = (): void => this.markUp()
  private readonly onClose = (): void => {
    if (this.state === 'up') this.markDown(new GatewayError('REDIS_UNAVAILABLE', 'connection closed'))
  }

  /** Stop listening to the client (it stays open: it belongs to whoever created it). */
  dispose (): void {
    this.client?.off('ready', this.onReady)
    this.client?.off('close', this.onClose)
  }

  get up (): boolean { return this.state === 'up' }
  /** Whether a client was configured at all (false: the node runs alone on memory). */
  get enabled (): boolean { return this.client !== undefined }

  /** Run `fn` on the client under the deadline; rejects with FHG_ERR_REDIS_UNAVAILABLE when Redis cannot answer. */
  async call<T> (what: string, fn: (client: RedisClient) => Promise<T>): Promise<T> {
    const client = this.client
    if (client === undefined) throw new GatewayError('REDIS_UNAVAILABLE', 'no redis configured')
    if (client.status !== 'ready') {
      const err = new GatewayError('REDIS_UNAVAILABLE', `${what}: connection is ${client.status}`)
      // still on its first connection attempt: no verdict yet
      if (this.state !== 'unknown' || (client.status !== 'wait' && client.status !== 'connecting' && client.status !== 'connect')) this.markDown(err)
      throw err
    }
    try {
      const result = await withDeadline(fn(client), this.timeout, what)
      this.markUp()
      return result
    } catch (err) {
      if (isReplyError(err)) {
        this.markUp()
        throw err
      }
      // a bug of ours (bad argument, bad JSON) says nothing about Redis
      if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) throw err
      const wrapped = err instanceof GatewayError ? err : new GatewayError('REDIS_UNAVAILABLE', `${what}: ${(err as Error).message}`, { cause: err })
      this.markDown(wrapped)
      throw wrapped
    }
  }

  markUp (): void {
    if (this.state === 'up') return
    this.state = 'up'
    this.emit('up')
  }

  markDown (err: Error): void {
    if (this.state === 'down') return
    this.state = 'down'
    this.onError(err)
    this.emit('down', err)
  }
}

function noop (): void {}
