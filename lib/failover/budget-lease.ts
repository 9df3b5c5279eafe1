import type { RetryBudget } from './retry-budget.js'

const ACTIVE = 0
const SLOT = 1

/**
 * A hold on one upstream's RetryBudget: an active request (`enter`, counted in the budget's base) or a
 * retry/hedge slot (`take`). `release()` gives it back once; later calls do nothing, so every path that
 * ends a request or a try may call it without keeping its own "do I still hold it" flag.
 */
export class BudgetLease {
  private budget: RetryBudget | undefined
  private readonly kind: typeof ACTIVE | typeof SLOT

  private constructor (budget: RetryBudget, kind: typeof ACTIVE | typeof SLOT) {
    this.budget = budget
    this.kind = kind
  }

  /** A client request starts on the budget's upstream. */
  static enter (budget: RetryBudget): BudgetLease {
    budget.requestStarted()
    return new BudgetLease(budget, ACTIVE)
  }

  /** A retry or hedge slot, or undefined when the budget has no room (the refusal is counted). */
  static take (budget: RetryBudget): BudgetLease | undefined {
    return budget.tryAcquire() ? new BudgetLease(budget, SLOT) : undefined
  }

  get held (): boolean { return this.budget !== undefined }

  release (): void {
    const b = this.budget
    if (b === undefined) return
    this.budget = undefined
    if (this.kind === ACTIVE) b.requestEnded()
    else b.release()
  }
}
