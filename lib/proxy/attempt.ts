import type { Target } from '../upstream/target.js'

/**
 * One try of a proxied request against one target. It is also the request's
 * abort signal: undici accepts any object with `on`/`once`/`removeListener`, so
 * cancelling needs no AbortController per request.
 */
export class Attempt {
  target: Target
  /** performance.now() when the try was dispatched. */
  startedAt = 0
  /** ms from dispatch to response headers; -1 until they arrive. */
  headersMs = -1
  statusCode = 0
  error: Error | undefined = undefined
  ended = false
  headersTimeout: number
  bodyTimeout: number
  /** Free slot for the layer that started the try (route plan, failover state). */
  owner: unknown

  aborted = false
  reason: unknown = undefined
  private abortListener: (() => void) | undefined = undefined

  constructor (target: Target, headersTimeout: number, bodyTimeout: number, owner?: unknown) {
    this.target = target
    this.headersTimeout = headersTimeout
    this.bodyTimeout = bodyTimeout
    this.owner = owner
  }

  // --- the EventEmitter subset undici's addAbortListener uses ---
  on (event: string, fn: () => void): this {
    if (event === 'abort') this.abortListener = fn
    return this
  }

  once (event: string, fn: () => void): this { return this.on(event, fn) }

  removeListener (event: string, fn: () => void): this {
    if (event === 'abort' && this.abortListener === fn) this.abortListener = undefined
    return this
  }

  /** Abort the upstream request (client went away, hedge lost, deadline passed). */
  abort (reason?: Error): void {
    if (this.aborted || this.ended) return
    this.aborted = true
    this.reason = reason
    const fn = this.abortListener
    this.abortListener = undefined
    if (fn !== undefined) fn()
  }
}
