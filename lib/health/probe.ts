import { GatewayError } from '../errors.js'
import type { Target } from '../upstream/target.js'

/** Probe kinds: an HTTP request, or a TCP connect. */
export const PROBE_TYPES = ['http', 'tcp'] as const
export type ProbeType = typeof PROBE_TYPES[number]

/** One probe's outcome. `durationMs` is wall time from start to verdict. */
export interface ProbeResult {
  ok: boolean
  durationMs: number
  /** HTTP probes: the status received, if any. */
  status?: number
  /** Why it failed: an error code (`ECONNREFUSED`), `status 503`, `timeout after 500ms`. */
  error?: string
}

/** Runs one probe against a target; never rejects. `signal` aborts it (checker stop). */
export type Probe = (target: Target, signal?: AbortSignal) => Promise<ProbeResult>

/**
 * A list of statuses whose items are codes or inclusive [min, max] ranges, e.g.
 * `[[200, 399]]` or `[200, 204, [300, 302]]` (lib/config normalizes to ranges).
 */
export type StatusList = ReadonlyArray<number | readonly [number, number]>
export type ExpectedStatuses = StatusList

export const DEFAULT_EXPECTED_STATUSES: ExpectedStatuses = [[200, 399]]

/** Compile a status list into a 600-slot table: one array read per lookup. */
export function statusTable (spec: StatusList, what = 'expectedStatuses'): Uint8Array {
  const table = new Uint8Array(600)
  for (const item of spec) {
    const [lo, hi] = typeof item === 'number' ? [item, item] : item
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 100 || hi > 599 || lo > hi) {
      throw new GatewayError('INVALID_CONFIG', `healthCheck ${what}: invalid ${JSON.stringify(item)} (codes 100-599 or [min, max] ranges)`)
    }
    table.fill(1, lo, hi + 1)
  }
  return table
}

export function statusMatcher (spec: StatusList = DEFAULT_EXPECTED_STATUSES): (status: number) => boolean {
  const table = statusTable(spec)
  return (status) => status >= 0 && status < 600 && table[status] === 1
}

/** A short, stable error label: the code when there is one (ECONNREFUSED), else the message. */
export function errorLabel (err: unknown): string {
  if (err !== null && typeof err === 'object') {
    const e = err as { code?: unknown, message?: unknown, cause?: unknown }
    const cause = e.cause as { code?: unknown } | undefined
    if (typeof cause?.code === 'string') return cause.code
    if (typeof e.code === 'string' && !e.code.startsWith('UND_ERR_')) return e.code
    if (typeof e.message === 'string' && e.message !== '') return e.message
    if (typeof e.code === 'string') return e.code
  }
  return String(err)
}

/**
 * A per-probe deadline that also follows an outer signal (checker stop).
 * `done()` clears the timer and the listener; call it exactly once.
 */
export function probeDeadline (timeout: number, outer?: AbortSignal): { signal: AbortSignal, timedOut: () => boolean, done: () => void } {
  const ac = new AbortController()
  let expired = false
  const timer = setTimeout(() => { expired = true; ac.abort() }, timeout)
  timer.unref()
  const onOuter = (): void => ac.abort()
  if (outer !== undefined) {
    if (outer.aborted) ac.abort()
    else outer.addEventListener('abort', onOuter, { once: true })
  }
  return {
    signal: ac.signal,
    timedOut: () => expired,
    done: () => {
      clearTimeout(timer)
      outer?.removeEventListener('abort', onOuter)
    },
  }
}
