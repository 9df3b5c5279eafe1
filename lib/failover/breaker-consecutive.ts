import type { BreakerStrategy } from './breaker-strategy.js'

/** Opens after `threshold` failures in a row. */
export class ConsecutiveBreaker implements BreakerStrategy {
  readonly cause = 'consecutive_failures' as const
  private count = 0
  constructor (readonly threshold: number) {
    if (!(threshold >= 1)) throw new RangeError('consecutiveFailures must be >= 1')
  }

  success (): void { this.count = 0 }
  failure (): boolean { return ++this.count >= this.threshold }
  reset (): void { this.count = 0 }
}
