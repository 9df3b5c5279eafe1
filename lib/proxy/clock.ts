/** The time and timers the proxy data path uses: the real ones, or a fake one in unit tests (no sleeps). */
export interface Clock {
  /** Epoch ms. */
  now (): number
  /** A timer calling `fn(arg)` after `ms`: the argument saves a closure per request. */
  setTimeout<T> (fn: (arg: T) => void, ms: number, arg: T): unknown
  clearTimeout (timer: unknown): void
}

export const realClock: Clock = {
  now: Date.now,
  setTimeout: (fn, ms, arg) => setTimeout(fn, ms, arg),
  clearTimeout: (timer) => { clearTimeout(timer as NodeJS.Timeout) },
}
