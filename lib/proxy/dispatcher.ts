import { performance } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'
import type { Attempt, TryCallback } from './attempt.js'

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
 * the attempt doubles as the abort signal reply-from never passes. No closure is made per try:
 * the attempt rides in undici's `opaque` and on the response body.
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
    // the path the route matched goes out byte for byte, to the picked target: what `new URL()` made of it
    // (backslashes, dot segments, a `//host` start) never decides where the request lands
    if (attempt.path !== undefined) opts.path = attempt.path
    ;(opts as { origin?: unknown }).origin = attempt.target.origin
    opts.headersTimeout = attempt.headersTimeout
    opts.bodyTimeout = attempt.bodyTimeout
    opts.signal = attempt as unknown as Dispatcher.RequestOptions['signal']
    // undici hands `opaque` back to the callback, on success and on error: one shared callback
    // finds its try there, so a try costs no closures.
    ;(opts as { opaque?: unknown }).opaque = attempt
    attempt.observer = this.observer
    attempt.callback = cb as TryCallback
    attempt.startedAt = performance.now()
    this.inner.request(opts, onResponse)
  }

  close (): Promise<void> {
    return this.inner.close()
  }

  destroy (): Promise<void> {
    return this.inner.destroy()
  }
}

const kAttempt = Symbol('fastify-ha-gateway.attempt')
type TrackedBody = Dispatcher.ResponseData['body'] & { [kAttempt]?: Attempt }

function onResponse (err: Error | null, data?: Dispatcher.ResponseData): void {
  const attempt = data?.opaque as Attempt | undefined
  if (attempt === undefined) return // not ours: cannot happen, opaque is always handed back
  const cb = attempt.callback as RequestCallback
  attempt.callback = undefined
  if (err != null || data === undefined || data.body === undefined) {
    attempt.error = err ?? new Error('upstream returned no response')
    finish(attempt)
    cb(err ?? attempt.error)
    return
  }
  attempt.statusCode = data.statusCode
  attempt.headersMs = performance.now() - attempt.startedAt
  attempt.retryAfter = data.headers['retry-after']
  ;(attempt.observer as AttemptObserver).onHeaders(attempt)
  const body = data.body as TrackedBody
  body[kAttempt] = attempt
  body.on('close', onBodyClose)
  body.on('error', onBodyError)
  cb(null, data)
}

function onBodyClose (this: TrackedBody): void {
  const attempt = this[kAttempt]
  this[kAttempt] = undefined
  if (attempt !== undefined) finish(attempt)
}

/**
 * The body was read to its end by the proxy (a small body taken whole): the try is over now, before the reply
 * goes out, so the client's response closing first can never count it as aborted. Its later 'close' does nothing.
 */
export function bodyRead (body: object): void {
  onBodyClose.call(body as TrackedBody)
}

function onBodyError (this: TrackedBody, e: Error): void {
  const attempt = this[kAttempt]
  if (attempt !== undefined) attempt.error ??= e
}

function finish (attempt: Attempt): void {
  if (attempt.ended) return
  attempt.ended = true
  ;(attempt.observer as AttemptObserver).onEnd(attempt)
}
