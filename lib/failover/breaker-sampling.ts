import type { BreakerStrategy } from './breaker-strategy.js'
import { RollingWindow } from './breaker-window.js'

export interface SamplingBreakerOptions {
  /** Failure share in percent (0..100) at which the circuit opens. */
  errorThreshold: number
  /** Fewest requests in the window before the ratio counts. */
  volumeThreshold: number
  /** Window length (ms). */
  window: number
  buckets?: number
}

/** Opens when failures / requests over a rolling window reach `errorThreshold` %, with enough volume. */
export class SamplingBreaker implements BreakerStrategy {
  readonly cause = 'error_ratio' as const
  readonly errorThreshold: number
  readonly volumeThreshold: number
  private readonly window: RollingWindow

  constructor (opts: SamplingBreakerOptions) {
    if (!(opts.errorThreshold >= 0 && opts.errorThreshold <= 100)) throw new RangeError('errorThreshold must be a percent within 0..100')
    this.errorThreshold = opts.errorThreshold
    this.volumeThreshold = Math.max(1, opts.volumeThreshold)
    this.window = new RollingWindow(opts.window, opts.buckets)
  }

  success (now: number): void { this.window.record(false, now) }

  failure (now: number): boolean {
    this.window.record(true, now)
    const total = this.window.total(now)
    return total >= this.volumeThreshold && this.window.failed(now) * 100 >= this.errorThreshold * total
  }

  reset (): void { this.window.reset() }
}
