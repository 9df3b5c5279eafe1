import { request, type Dispatcher } from 'undici'
import type { FailoverEvent } from './events.js'
import type { Notifier } from './notifier.js'

export interface WebhookNotifierOptions {
  url: string
  /** Deadline of one POST, headers and body (ms). */
  timeout?: number
  /** Events waiting to be posted; beyond it the oldest is dropped. */
  maxQueue?: number
  /** POSTs in flight at once. */
  concurrency?: number
  headers?: Record<string, string>
  /** undici dispatcher (default: the global one). */
  dispatcher?: Dispatcher
  /** A POST failed (network, timeout, non-2xx); for logs. Must not throw. */
  onError?: (err: unknown, event: FailoverEvent) => void
}

export const WEBHOOK_DEFAULTS = { timeout: 5_000, maxQueue: 1_000, concurrency: 2 }

/**
 * POSTs each event as JSON. notify() only enqueues: a slow or hanging webhook costs a request
 * nothing, the queue is bounded (drop oldest, counted in `dropped`) and at most `concurrency`
 * POSTs run at once, each cut at `timeout`. Nothing here throws or rejects.
 */
export class WebhookNotifier implements Notifier {
  readonly url: string
  sent = 0
  failed = 0
  dropped = 0
  active = 0
  private readonly timeout: number
  private readonly maxQueue: number
  private readonly concurrency: number
  private readonly headers: Record<string, string>
  private readonly dispatcher: Dispatcher | undefined
  private readonly onError: ((err: unknown, event: FailoverEvent) => void) | undefined
  private readonly queue: FailoverEvent[] = []
  private readonly controllers = new Set<AbortController>()
  private idleWaiters: Array<() => void> = []
  private scheduled = false
  private closed = false

  constructor (opts: WebhookNotifierOptions) {
    this.url = new URL(opts.url).href
    this.timeout = opts.timeout ?? WEBHOOK_DEFAULTS.timeout
    this.maxQueue = Math.max(1, opts.maxQueue ?? WEBHOOK_DEFAULTS.maxQueue)
    this.concurrency = Math.max(1, opts.concurrency ?? WEBHOOK_DEFAULTS.concurrency)
    this.headers = { 'content-type': 'application/json', ...opts.headers }
    this.dispatcher = opts.dispatcher
    this.onError = opts.onError
  }

  get queued (): number { return this.queue.length }

  notify (event: FailoverEvent): void {
    if (this.closed) { this.dropped++; return }
    this.queue.push(event)
    if (this.queue.length > this.maxQueue) {
      this.queue.shift()
      this.dropped++
    }
    // start POSTs on a later turn: the caller is on a request's path
    if (!this.scheduled && this.active < this.concurrency) {
      this.scheduled = true
      setImmediate(this.pump).unref()
    }
  }

  /** Resolves once the queue is empty and no POST is in flight. */
  idle (): Promise<void> {
    if (this.active === 0 && this.queue.length === 0) return Promise.resolve()
    return new Promise((resolve) => { this.idleWaiters.push(resolve) })
  }

  /** Drop what is queued (counted), abort POSTs in flight, wait for them to end. */
  async close (): Promise<void> {
    this.closed = true
    this.dropped += this.queue.length
    this.queue.length = 0
    for (const c of this.controllers) c.abort()
    await this.idle()
  }

  private readonly pump = (): void => {
    this.scheduled = false
    while (this.active < this.concurrency && this.queue.length > 0) {
      const event = this.queue.shift() as FailoverEvent
      this.active++
      void this.post(event).finally(this.done)
    }
    this.checkIdle()
  }

  private readonly done = (): void => {
    this.active--
    this.pump()
  }

  private async post (event: FailoverEvent): Promise<void> {
    const controller = new AbortController()
    this.controllers.add(controller)
    const timer = setTimeout(() => controller.abort(new Error(`webhook timed out after ${this.timeout} ms`)), this.timeout)
    timer.unref()
    try {
      const res = await request(this.url, {
        method: 'POST',
        headers: this.headers,
        body: JSON.stringify(event),
        signal: controller.signal,
        dispatcher: this.dispatcher,
      })
      await res.body.dump()
      if (res.statusCode >= 200 && res.statusCode < 300) {
        this.sent++
      } else {
        this.fail(new Error(`webhook answered ${res.statusCode}`), event)
      }
    } catch (err) {
      this.fail(err, event)
    } finally {
      clearTimeout(timer)
      this.controllers.delete(controller)
    }
  }

  private fail (err: unknown, event: FailoverEvent): void {
    this.failed++
    try { this.onError?.(err, event) } catch { /* a logging hook must not break the pump */ }
  }

  private checkIdle (): void {
    if (this.active !== 0 || this.queue.length !== 0 || this.idleWaiters.length === 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const w of waiters) w()
  }
}
