import { performance } from 'node:perf_hooks'
import type { Dispatcher } from 'undici'
import { GatewayError } from '../errors.js'
import type { Target } from '../upstream/target.js'
import { errorLabel, statusMatcher, type ExpectedStatuses, type Probe, type ProbeResult } from './probe.js'

export interface HttpProbeOptions {
  /** default GET */
  method?: string
  /** Absolute path on the target's origin (a path in the target url is not prepended); default /health. */
  path?: string
  /** default [[200, 399]] */
  expectedStatuses?: ExpectedStatuses
  /** Host header to send instead of the target's host:port. */
  host?: string
  /** ms, covers connect, headers and body. */
  timeout: number
}

/** Bodies above this are not read to the end: the connection is dropped instead. */
const BODY_LIMIT = 64 * 1024

type Controller = Dispatcher.DispatchController

/**
 * One probe in flight: an undici dispatch handler with a single deadline timer.
 * Dispatch instead of `request()` skips the body stream, AbortSignal and promise
 * chain: about a third of the CPU per probe (see bench/probes.ts).
 */
class ProbeRun implements Dispatcher.DispatchHandler {
  readonly promise: Promise<ProbeResult>
  private resolve!: (r: ProbeResult) => void
  private readonly start = performance.now()
  private readonly timer: NodeJS.Timeout
  private controller: Controller | undefined
  private status = 0
  private bytes = 0
  private settled = false

  constructor (private readonly accepts: (s: number) => boolean, private readonly timeout: number) {
    this.promise = new Promise((resolve) => { this.resolve = resolve })
    this.timer = setTimeout(() => this.onTimeout(), timeout)
    this.timer.unref()
  }

  onRequestStart (controller: Controller): void {
    this.controller = controller
    if (this.settled) controller.abort(new Error('probe over'))
  }

  onResponseStart (_c: Controller, statusCode: number): void {
    this.status = statusCode
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    this.bytes += chunk.length
    if (this.bytes > BODY_LIMIT) {
      this.verdict()
      controller.abort(new Error('probe body too large'))
    }
  }

  onResponseEnd (): void { this.verdict() }

  onResponseError (_c: Controller, err: Error): void {
    this.finish({ ok: false, durationMs: 0, error: errorLabel(err) })
  }

  abort (reason: string): void {
    this.finish({ ok: false, durationMs: 0, error: reason })
    this.controller?.abort(new Error(reason))
  }

  private onTimeout (): void { this.abort(`timeout after ${this.timeout}ms`) }

  private verdict (): void {
    const status = this.status
    this.finish(this.accepts(status)
      ? { ok: true, durationMs: 0, status }
      : { ok: false, durationMs: 0, status, error: `status ${status}` })
  }

  private finish (r: ProbeResult): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    r.durationMs = performance.now() - this.start
    this.resolve(r)
  }
}

/**
 * `type: http` probe over the caller's dispatcher (the checker's own undici Agent,
 * pipelining 1, so probes never queue behind proxied traffic). Never rejects.
 */
export function createHttpProbe (options: HttpProbeOptions, dispatcher: Dispatcher): Probe {
  const method = (options.method ?? 'GET').toUpperCase() as Dispatcher.HttpMethod
  const path = options.path ?? '/health'
  if (!path.startsWith('/')) throw new GatewayError('INVALID_CONFIG', `healthCheck.active.path must start with "/": ${path}`)
  const accepts = statusMatcher(options.expectedStatuses)
  const headers = options.host !== undefined && options.host !== '' ? { host: options.host } : undefined
  const timeout = options.timeout

  return function probeHttp (target: Target, signal?: AbortSignal): Promise<ProbeResult> {
    const run = new ProbeRun(accepts, timeout)
    if (signal !== undefined) {
      if (signal.aborted) run.abort('aborted')
      else {
        const onAbort = (): void => run.abort('aborted')
        signal.addEventListener('abort', onAbort, { once: true })
        void run.promise.then(() => signal.removeEventListener('abort', onAbort))
      }
    }
    try {
      dispatcher.dispatch({ origin: target.origin, path, method, headers }, run)
    } catch (err) {
      run.abort(errorLabel(err))
    }
    return run.promise
  }
}
