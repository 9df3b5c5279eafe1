import t from 'tap'
import { RetryBudget } from '../../lib/failover/retry-budget.js'

function fill (b: RetryBudget): number {
  let n = 0
  while (b.tryAcquire()) n++
  return n
}

t.test('the floor minRetryConcurrency applies when few requests are active', async (t) => {
  const b = new RetryBudget()
  t.equal(b.limit, 3, 'no traffic: floor of 3')
  for (let i = 0; i < 10; i++) b.requestStarted()
  t.equal(b.limit, 3, '20 % of 10 = 2 < floor')
  t.equal(fill(b), 3)
  t.equal(b.exhausted, 1, 'the refusal is counted')
})

t.test('above the floor: budgetPercent of active requests', async (t) => {
  const b = new RetryBudget({ budgetPercent: 20, minRetryConcurrency: 3 })
  for (let i = 0; i < 100; i++) b.requestStarted()
  t.equal(b.limit, 20)
  t.equal(fill(b), 20)
  for (let i = 0; i < 50; i++) b.requestEnded()
  t.equal(b.limit, 10, 'shrinks with traffic')
  t.notOk(b.tryAcquire(), 'retries in flight (20) exceed the new limit')
  for (let i = 0; i < 11; i++) b.release()
  t.equal(b.retries, 9)
  t.ok(b.tryAcquire(), 'room again below the limit')
})

t.test('exhaustion hook and counters never go negative', async (t) => {
  let hook = 0
  const b = new RetryBudget({ minRetryConcurrency: 0, budgetPercent: 50, onExhausted: () => hook++ })
  t.notOk(b.tryAcquire(), 'no active requests, no floor: no retry')
  b.requestStarted(); b.requestStarted()
  t.ok(b.hasRoom())
  t.ok(b.tryAcquire())
  t.notOk(b.hasRoom())
  t.notOk(b.tryAcquire())
  t.equal(hook, 2)
  t.equal(b.exhausted, 2)
  b.release(); b.release(); b.requestEnded(); b.requestEnded(); b.requestEnded()
  t.equal(b.retries, 0)
  t.equal(b.active, 0)
})

t.test('bounds extra load: with every try failing, retries stay under budgetPercent of requests', async (t) => {
  // 1000 concurrent requests all failing and all wanting to retry
  const b = new RetryBudget()
  for (let i = 0; i < 1000; i++) b.requestStarted()
  let retried = 0
  for (let i = 0; i < 1000; i++) if (b.tryAcquire()) retried++
  t.equal(retried, 200)
  t.equal(b.exhausted, 800)
})

t.test('rejects nonsense options', async (t) => {
  t.throws(() => new RetryBudget({ budgetPercent: 120 }))
  t.throws(() => new RetryBudget({ minRetryConcurrency: -1 }))
})
