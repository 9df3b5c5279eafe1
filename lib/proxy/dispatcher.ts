import { performance } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'
import type { Attempt } from './attempt.js'

export interface AttemptObserver {
  /** Response headers arrived (attempt.statusCode and headersMs are set). */
  onHeaders (attempt: Attempt): void
  /** The try is over: body fully read or destroyed, or it failed (attempt.error). Called exactly once. */
  onEnd (attempt: Attempt): void
}

type RequestCallback = (err: Error | null, data?: Dispatcher.ResponseData) => void

/**
 * The object handed to @fastify/reply-from as its `undici` instance. reply-from
 * calls `request()` synchronously from `reply.from()`, so the caller arms
 * `next` with the Attempt right before and the dispatcher picks it up: the
 * attempt's lifecycle is then tracked exactly (in-flight, latency, errors) and
 * the attempt doubles as the abort signal reply-from never passes.
 */
export class TrackingDispatcher {
  private readonly inner: Dispatcher
  private readonly observer: AttemptObserver
  private next: Attempt | undefined = undefined

  constructor (inner: Dispatcher, observer: AttemptObserver) {
    this.inner = inner
    this.observer = observer
  }

  /** Arm the attempt the next `request()` call belongs to. */
  arm (attempt: Attempt): void {
    this.next = attempt
  }

  /** Drop an armed attempt that was never dispatched (reply.from threw). */
  disarm (): void {
    this.next = undefined
  }

  request (opts: Dispatcher.RequestOptions, cb: RequestCallback): void {
    const attempt = this.next
    this.next = undefined
    if (attempt === undefined) {
      // Not from reply.proxy(): a plain pass-through.
      this.inner.request(opts, cb)
      return
    }
    opts.headersTimeout = attempt.headersTimeout
    opts.bodyTimeout = attempt.bodyTimeout
    opts.signal = attempt as unknown as Dispatcher.RequestOptions['signal']
    attempt.startedAt = performance.now()
    const observer = this.observer
    this.inner.request(opts, (err, data) => {
      if (err != null || data === undefined) {
        attempt.error = err ?? new Error('upstream returned no response')
        finish(observer, attempt)
        cb(err)
        return
      }
      attempt.statusCode = data.statusCode
      attempt.headersMs = performance.now() - attempt.startedAt
      attempt.retryAfter = data.headers['retry-after']
      observer.onHeaders(attempt)
      const body = data.body
      body.once('close', () => finish(observer, attempt))
      body.once('error', (e: Error) => { attempt.error ??= e })
      cb(null, data)
    })
  }

  close (): Promise<void> {
    return this.inner.close()
  }

  destroy (): Promise<void> {
    return this.inner.destroy()
  }
}

function finish (observer: AttemptObserver, attempt: Attempt): void {
  if (attempt.ended) return
  attempt.ended = true
  observer.onEnd(attempt)
}
