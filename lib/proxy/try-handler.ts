import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { AbortFn, Attempt } from './attempt.js'
import { passEarlyHints, passTrailers } from './passthrough.js'

/** Told by every try handler when its try ends (the engine's bookkeeping: in-flight, breaker, budget slot, observers). */
export interface TryTracker {
  ended (a: Attempt): void
}

type Handler = Dispatcher.DispatchHandler

/**
 * An undici handler decorator (undici's own interceptors wrap handlers the same way) that tracks one
 * try: it passes every call through to the handler it wraps (reply-from's request handler) and, on the
 * way, records the response status and header latency, hands undici's abort to the Attempt, tells the
 * try's owner when headers arrive or the try fails, and ends the try exactly once: when the last byte
 * arrived (onComplete) or it failed (onError, which is also how a destroyed response body ends it).
 * It speaks undici's handler API that undici 7 runs natively (onConnect / onHeaders / onData / onComplete).
 */
export class TryHandler implements Handler {
  private readonly a: Attempt
  private readonly inner: Handler
  private readonly tracker: TryTracker

  constructor (a: Attempt, inner: Handler, tracker: TryTracker) {
    this.a = a
    this.inner = inner
    this.tracker = tracker
  }

  onConnect (abort: AbortFn, context?: unknown): void {
    ;(this.inner.onConnect as (abort: AbortFn, context?: unknown) => void)(abort, context)
    this.a.connected(abort)
  }

  onResponseStarted (): void { this.inner.onResponseStarted?.() }

  onHeaders (statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    const a = this.a
    if (statusCode < 200) {
      // 1xx: not the answer; a 103 (Early Hints) of a try still in the race goes to the client now
      if (!a.aborted && a.fate.kind === 'pass') passEarlyHints(a.response, statusCode, rawHeaders)
      return this.inner.onHeaders!(statusCode, rawHeaders, resume, statusText)
    }
    a.statusCode = statusCode
    a.headersMs = performance.now() - a.startedAt
    a.rawHeaders = rawHeaders
    a.target.recordLatency(a.headersMs, Date.now())
    const owner = a.owner
    if (owner === undefined) return this.inner.onHeaders!(statusCode, rawHeaders, resume, statusText)
    owner.tryHeaders(a)
    try {
      // reply-from's callbacks (rewriteHeaders, onResponse) run inside this call
      return this.inner.onHeaders!(statusCode, rawHeaders, resume, statusText)
    } finally {
      owner.tryHeadersDone(a)
    }
  }

  onData (chunk: Buffer): boolean { return this.inner.onData!(chunk) }

  onComplete (trailers: string[] | null): void {
    const a = this.a
    // the answer's trailers, before reply-from ends the body (and the client's response with it)
    if (trailers !== null && !a.aborted && a.fate.kind === 'pass') passTrailers(a.response, trailers)
    this.end()
    this.inner.onComplete!(trailers)
  }

  onError (err: Error): void {
    const a = this.a
    a.error ??= err
    const owner = a.owner
    const early = a.statusCode === 0
    this.end()
    // a failure before headers is the owner's to act on: on a microtask, never inside undici's call stack
    // (this may run synchronously inside reply.from(), when undici refuses the request)
    if (early && owner !== undefined) queueMicrotask(() => { owner.tryFailed(a) })
    this.inner.onError!(err)
  }

  onUpgrade (statusCode: number, headers: Buffer[] | string[] | null, socket: Duplex): void {
    this.inner.onUpgrade!(statusCode, headers, socket)
  }

  onBodySent (chunkSize: number, totalBytesSent: number): void { this.inner.onBodySent?.(chunkSize, totalBytesSent) }

  onRequestSent (): void { (this.inner as { onRequestSent?: () => void }).onRequestSent?.() }

  private end (): void {
    const a = this.a
    if (a.ended) return
    a.ended = true
    this.tracker.ended(a)
  }
}
