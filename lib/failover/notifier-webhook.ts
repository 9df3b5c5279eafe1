import { setTimeout as sleep } from 'node:timers/promises'
import { request, type Dispatcher } from 'undici'
import { fullJitter } from './backoff.js'
import type { FailoverEvent } from './events.js'

export interface WebhookNotifierOptions<E = FailoverEvent> {
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
  /** A POST failed (network, timeout, non-2xx) and will not be retried; for logs. Must not throw. */
  onError?: (err: unknown, event: E) => void
  /** The JSON body of an event (default: the event itself). */
  body?: (event: E) => unknown
  /** Tries after a failed POST (network error, timeout, 408, 429, 5xx), with full-jitter backoff. Default 0. */
  retries?: number
  /** Backoff base and cap between tries (ms). */
  retryDelay?: number
  maxRetryDelay?: number
}

export const WEBHOOK_DEFAULTS = { timeout: 5_000, maxQueue: 1_000, concurrency: 2, retries: 0, retryDelay: 500, maxRetryDelay: 10_000 }

/**
 * POSTs each event as JSON. notify() only enqueues: a slow or hanging webhook costs a request
 * nothing, the queue is bounded (drop oldest, counted in `dropped`) and at most `concurrency`
 * POSTs run at once, each cut at `timeout`. Nothing here throws or rejects.
 */
export class WebhookNotifier<E = FailoverEvent> {
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
  private readonly onError: ((err: unknown, event: E) => void) | undefined
  private readonly body: (event: E) => unknown
  private readonly retries: number
  private readonly retryDelay: number
  private readonly maxRetryDelay: number
  retried = 0
  private readonly queue: E[] = []
  private readonly controllers = new Set<AbortController>()
  private idleWaiters: Array<() => void> = []
  private scheduled = false
  private closed = false

  constructor (opts: WebhookNotifierOptions<E>) {
    this.url = new URL(opts.url).href
    this.timeout = opts.timeout ?? WEBHOOK_DEFAULTS.timeout
    this.maxQueue = Math.max(1, opts.maxQueue ?? WEBHOOK_DEFAULTS.maxQueue)
    this.concurrency = Math.max(1, opts.concurrency ?? WEBHOOK_DEFAULTS.concurrency)
    this.headers = { 'content-type': 'application/json', ...opts.headers }
    this.dispatcher = opts.dispatcher
    this.onError = opts.onError
    this.body = opts.body ?? ((e) => e)
    this.retries = Math.max(0, opts.retries ?? WEBHOOK_DEFAULTS.retries)
    this.retryDelay = opts.retryDelay ?? WEBHOOK_DEFAULTS.retryDelay
    this.maxRetryDelay = opts.maxRetryDelay ?? WEBHOOK_DEFAULTS.maxRetryDelay
  }

  get queued (): number { return this.queue.length }

  notify (event: E): void {
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
      const event = this.queue.shift() as E
      this.active++
      void this.post(event).finally(this.done)
    }
    this.checkIdle()
  }

  private readonly done = (): void => {
    this.active--
    this.pump()
  }

  private async post (event: E): Promise<void> {
    const controller = new AbortController()
    this.controllers.add(controller)
    try {
      const body = JSON.stringify(this.body(event))
      for (let attempt = 0; ; attempt++) {
        const err = await this.postOnce(body, controller)
        if (err === undefined) { this.sent++; return }
        if (!err.retryable || attempt >= this.retries || controller.signal.aborted || this.closed) { this.fail(err.error, event); return }
        this.retried++
        // backoff on the event's own slot: alerts are few, and close() aborts the wait
        await sleep(fullJitter(attempt, this.retryDelay, this.maxRetryDelay), undefined, { signal: controller.signal, ref: false }).catch(() => {})
      }
    } finally {
      this.controllers.delete(controller)
    }
  }

  /** One POST; undefined when it succeeded. */
  private async postOnce (body: string, controller: AbortController): Promise<{ error: unknown, retryable: boolean } | undefined> {
    const tryController = new AbortController()
    const onAbort = (): void => tryController.abort(controller.signal.reason)
    controller.signal.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => tryController.abort(new Error(`webhook timed out after ${this.timeout} ms`)), this.timeout)
    timer.unref()
    try {
      const res = await request(this.url, { method: 'POST', headers: this.headers, body, signal: tryController.signal, dispatcher: this.dispatcher })
      await res.body.dump()
      if (res.statusCode >= 200 && res.statusCode < 300) return undefined
      const s = res.statusCode
      return { error: new Error(`webhook answered ${s}`), retryable: s === 408 || s === 429 || s >= 500 }
    } catch (err) {
      return { error: err, retryable: true }
    } finally {
      clearTimeout(timer)
      controller.signal.removeEventListener('abort', onAbort)
    }
  }

  private fail (err: unknown, event: E): void {
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
