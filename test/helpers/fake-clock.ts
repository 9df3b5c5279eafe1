// A fake clock and timer source (lib/ratelimit/deadline.ts TimerSource): time moves only when a test says so, timers
// fire in order of their time, immediates after the timers of the same instant, and the promise callbacks they start
// run before the clock moves on. Tests of time-based behaviour use it instead of sleeps and wall-clock bounds.
import type { TimerSource } from '../../lib/ratelimit/deadline.js'

interface Pending { at: number, seq: number, fn: () => void }

/** Lets every promise callback already started run (a real turn of the event loop). */
export async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
}

export class FakeClock implements TimerSource {
  #now: number
  #seq = 0
  #timers: Pending[] = []
  #immediates: Pending[] = []

  constructor (start = 0) { this.#now = start }

  now (): number { return this.#now }

  setTimeout (fn: () => void, ms: number): unknown {
    const p = { at: this.#now + Math.max(0, ms), seq: this.#seq++, fn }
    this.#timers.push(p)
    return p
  }

  clearTimeout (handle: unknown): void { this.#timers = this.#timers.filter((p) => p !== handle) }

  setImmediate (fn: () => void): unknown {
    const p = { at: this.#now, seq: this.#seq++, fn }
    this.#immediates.push(p)
    return p
  }

  clearImmediate (handle: unknown): void { this.#immediates = this.#immediates.filter((p) => p !== handle) }

  /** Timers and immediates not run yet. */
  get pending (): number { return this.#timers.length + this.#immediates.length }

  /** Move time forward by `ms`, running each timer at its time (then the immediates and promise callbacks it started). */
  async advance (ms: number): Promise<void> {
    const end = this.#now + ms
    for (;;) {
      await this.#runImmediates()
      const next = this.#timers.reduce<Pending | undefined>((a, p) => a === undefined || p.at < a.at || (p.at === a.at && p.seq < a.seq) ? p : a, undefined)
      if (next === undefined || next.at > end) break
      this.#timers = this.#timers.filter((p) => p !== next)
      this.#now = Math.max(this.#now, next.at) // after a stall, late: at the time it really runs
      next.fn()
      await settle()
    }
    this.#now = end
    await this.#runImmediates()
  }

  /**
   * This process is starved for `ms`: time jumps with no timer run, so every timer due in between fires late
   * (at the end of the stall, in order), as a busy loop or a taken CPU makes real timers do.
   */
  async stall (ms: number): Promise<void> {
    this.#now += ms
    await this.advance(0)
  }

  async #runImmediates (): Promise<void> {
    while (this.#immediates.length > 0) {
      const batch = this.#immediates
      this.#immediates = []
      for (const p of batch) p.fn()
      await settle()
    }
  }
}
