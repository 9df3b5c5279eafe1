import { performance } from 'node:perf_hooks'
import { Dispatcher } from 'undici'
import type { Attempt } from './attempt.js'
import { TryHandler, type TryTracker } from './try-handler.js'

/**
 * The dispatcher tries go through: a real undici Dispatcher over the plugin's Agent. A request dispatched
 * while a try is armed goes to that try's target, with its path and timeouts, and its handler is wrapped in
 * a TryHandler that tracks the try; anything else passes through untouched.
 *
 * The caller arms the try right before it dispatches: the direct path (lib/proxy/direct.ts) calls dispatch()
 * itself; reply-from (bodies a parser made a value of) takes this dispatcher as its `undici` instance and calls
 * `request()` (undici's, which calls `dispatch()`) synchronously from `reply.from()`, with no way to pass a
 * per-request object through. disarm() drops the try if reply.from() threw before dispatching.
 */
export class TryDispatcher extends Dispatcher {
  private readonly inner: Dispatcher
  private readonly tracker: TryTracker
  private armed: Attempt | undefined = undefined

  constructor (inner: Dispatcher, tracker: TryTracker) {
    super()
    this.inner = inner
    this.tracker = tracker
  }

  /** The try the next dispatch belongs to. */
  arm (a: Attempt): void { this.armed = a }

  disarm (): void { this.armed = undefined }

  /** The armed try's origin (reply-from's getUpstream asks, inside reply.from()). */
  armedOrigin (): string { return this.armed?.target.origin ?? '' }

  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const a = this.armed
    if (a === undefined) return this.inner.dispatch(opts, handler)
    this.armed = undefined
    // the path the route matched goes out byte for byte, to the picked target: what `new URL()` made of it
    // (backslashes, dot segments, a `//host` start) never decides where the request lands
    if (a.path !== undefined) opts.path = a.path
    opts.origin = a.target.origin
    opts.headersTimeout = a.headersTimeout
    opts.bodyTimeout = a.bodyTimeout
    a.startedAt = performance.now()
    return this.inner.dispatch(opts, new TryHandler(a, handler, this.tracker))
  }

  override close (): Promise<void>
  override close (callback: () => void): void
  override close (callback?: () => void): Promise<void> | void {
    if (callback === undefined) return this.inner.close()
    this.inner.close(callback)
  }

  override destroy (): Promise<void>
  override destroy (err: Error | null): Promise<void>
  override destroy (callback: () => void): void
  override destroy (err: Error | null, callback: () => void): void
  override destroy (a?: Error | null | (() => void), b?: () => void): Promise<void> | void {
    if (typeof a === 'function') { this.inner.destroy(a); return }
    if (b !== undefined) { this.inner.destroy(a ?? null, b); return }
    return this.inner.destroy(a ?? null)
  }
}
