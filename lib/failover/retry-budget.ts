export interface RetryBudgetOptions {
  /** Retries (and hedges) in flight may be at most this percent of active requests. Envoy default: 20. */
  budgetPercent?: number
  /** ...but at least this many at once, so a quiet upstream can still retry. Envoy default: 3. */
  minRetryConcurrency?: number
  /** Called each time a retry is refused (metrics: retry_budget_exhausted_total). */
  onExhausted?: () => void
}

/**
 * Envoy's retry budget (cluster circuit_breakers.thresholds.retry_budget), one per upstream:
 * retries in flight <= max(minRetryConcurrency, budgetPercent % of active requests).
 * It bounds the extra load retries add when every target fails. O(1), no allocation.
 */
export class RetryBudget {
  readonly budgetPercent: number
  readonly minRetryConcurrency: number
  /** Client requests in flight (between requestStarted and requestEnded). */
  active = 0
  /** Retries and hedges in flight (between a successful tryAcquire and its release). */
  retries = 0
  /** Refusals so far. */
  exhausted = 0
  private readonly onExhausted: (() => void) | undefined

  constructor (opts: RetryBudgetOptions = {}) {
    this.budgetPercent = opts.budgetPercent ?? 20
    this.minRetryConcurrency = opts.minRetryConcurrency ?? 3
    if (!(this.budgetPercent >= 0 && this.budgetPercent <= 100)) throw new RangeError('budgetPercent must be within 0..100')
    if (!(this.minRetryConcurrency >= 0)) throw new RangeError('minRetryConcurrency must be >= 0')
    this.onExhausted = opts.onExhausted
  }

  /** Retries allowed in flight right now. */
  get limit (): number {
    return Math.max(this.minRetryConcurrency, Math.floor(this.active * this.budgetPercent / 100))
  }

  requestStarted (): void { this.active++ }
  requestEnded (): void { if (this.active > 0) this.active-- }

  /** Is there room for one more retry? Does not take it. */
  hasRoom (): boolean { return this.retries < this.limit }

  /** Take a retry slot; on false the retry must not happen (and the refusal is counted). */
  tryAcquire (): boolean {
    if (this.retries < this.limit) {
      this.retries++
      return true
    }
    this.refuse()
    return false
  }

  /** Count a retry refused for want of room (tryAcquire does; so does a caller that only checked hasRoom()). */
  refuse (): void {
    this.exhausted++
    this.onExhausted?.()
  }

  /** Give back a slot taken by tryAcquire, once that retry or hedge has ended. */
  release (): void { if (this.retries > 0) this.retries-- }
}
