import { isIdempotent } from './retry-policy.js'
import type { RetryBudget } from './retry-budget.js'

/** Hedge this request? Idempotent methods only, and only while the retry budget has room. */
export function shouldHedge (method: string, budget?: RetryBudget): boolean {
  return isIdempotent(method) && (budget === undefined || budget.hasRoom())
}

/** One try; it must settle soon after `signal` aborts. */
export type Attempt<T> = (signal: AbortSignal) => Promise<T>

export interface RaceOptions<T> {
  /** Aborts both tries (client went away); the race rejects with its reason. */
  signal?: AbortSignal
  /** Hedges count against it: no slot at hedge time, no hedge (counted as exhausted). */
  budget?: RetryBudget
  /** Called when the hedge starts (metrics: hedges_total). */
  onHedge?: () => void
  /** Receives a loser's value that resolved too late, to free it (e.g. dump a response body). */
  discard?: (value: T) => void
}

export interface RaceResult<T> {
  value: T
  winner: 'first' | 'second'
  hedged: boolean
}

/**
 * Start `first`; if it has not settled after `delayMs`, start `second` too. The first to
 * resolve wins and the other is aborted. A rejection waits for the other try if one is still
 * running; when none is, the race rejects with that error (before the hedge: first's error,
 * so the retry policy can take over).
 */
export function race<T> (first: Attempt<T>, second: Attempt<T>, delayMs: number, opts: RaceOptions<T> = {}): Promise<RaceResult<T>> {
  return new Promise<RaceResult<T>>((resolve, reject) => {
    const { signal, budget } = opts
    if (signal?.aborted === true) { reject(signal.reason); return }
    const c1 = new AbortController()
    let c2: AbortController | undefined
    let settled = false
    let pending = 0
    let holding = false

    const finish = (): void => {
      settled = true
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
      if (holding) { holding = false; budget?.release() }
    }
    const onAbort = (): void => {
      if (settled) return
      finish()
      c1.abort(signal?.reason)
      c2?.abort(signal?.reason)
      reject(signal?.reason)
    }
    const run = (fn: Attempt<T>, own: AbortController, which: 'first' | 'second'): void => {
      pending++
      let p: Promise<T>
      try { p = Promise.resolve(fn(own.signal)) } catch (err) { p = Promise.reject(err) }
      p.then((value) => {
        pending--
        if (settled) { opts.discard?.(value); return }
        finish()
        ;(which === 'first' ? c2 : c1)?.abort()
        resolve({ value, winner: which, hedged: c2 !== undefined })
      }, (err: unknown) => {
        pending--
        if (which === 'second' && holding) { holding = false; budget?.release() }
        if (settled || pending > 0) return
        finish()
        reject(err)
      })
    }

    signal?.addEventListener('abort', onAbort, { once: true })
    const timer = setTimeout(() => {
      if (settled) return
      if (budget !== undefined) {
        if (!budget.tryAcquire()) return
        holding = true
      }
      c2 = new AbortController()
      opts.onHedge?.()
      run(second, c2, 'second')
    }, delayMs) // not unref'd: it lives no longer than the race, and a pending race should keep the process up
    run(first, c1, 'first')
  })
}
