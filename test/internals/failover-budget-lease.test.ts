import t from 'tap'
import { BudgetLease } from '../../lib/failover/budget-lease.js'
import { RetryBudget } from '../../lib/failover/retry-budget.js'

t.test('a slot lease: release frees exactly one slot, once', async (t) => {
  const budget = new RetryBudget({ budgetPercent: 0, minRetryConcurrency: 2 })
  const a = BudgetLease.take(budget)
  const b = BudgetLease.take(budget)
  t.ok(a?.held && b?.held, 'two slots taken')
  t.equal(budget.retries, 2)
  t.equal(BudgetLease.take(budget), undefined, 'no room for a third: refused')
  t.equal(budget.exhausted, 1, 'and the refusal counted')

  a!.release()
  t.equal(budget.retries, 1, 'one slot freed')
  t.notOk(a!.held)
  a!.release()
  a!.release()
  t.equal(budget.retries, 1, 'releasing again frees nothing: b still holds its slot')
  t.ok(b!.held)

  const c = BudgetLease.take(budget)
  t.ok(c?.held, 'the freed slot can be taken again')
  t.equal(budget.retries, 2)
  b!.release()
  c!.release()
  c!.release()
  t.equal(budget.retries, 0)
  t.equal(budget.exhausted, 1, 'no refusal counted by a release')
})

t.test('an active lease: counted in the budget base, released once', async (t) => {
  const budget = new RetryBudget({ budgetPercent: 50, minRetryConcurrency: 0 })
  const r1 = BudgetLease.enter(budget)
  const r2 = BudgetLease.enter(budget)
  t.equal(budget.active, 2)
  t.equal(budget.limit, 1, '50 % of two active requests')
  r1.release()
  r1.release()
  t.equal(budget.active, 1, 'a second release does not end the other request')
  t.equal(budget.limit, 0)
  t.ok(r2.held)
  t.notOk(r1.held)
  r2.release()
  t.equal(budget.active, 0)
})

t.test('a slot lease never touches the active count, nor an active lease the slots', async (t) => {
  const budget = new RetryBudget({ minRetryConcurrency: 1 })
  const req = BudgetLease.enter(budget)
  const slot = BudgetLease.take(budget)!
  slot.release()
  slot.release()
  t.equal(budget.active, 1)
  t.equal(budget.retries, 0)
  req.release()
  req.release()
  t.equal(budget.active, 0)
  t.equal(budget.retries, 0)
})
