import t from 'tap'
import { race, shouldHedge } from '../../lib/failover/hedge.js'
import { RetryBudget } from '../../lib/failover/retry-budget.js'

/** A fake try settled by hand; records its abort. */
function fake<T> () {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const state = { started: false, aborted: false, signal: undefined as AbortSignal | undefined }
  let onStart: () => void = () => {}
  const startedP = new Promise<void>((resolve) => { onStart = resolve })
  const attempt = (signal: AbortSignal): Promise<T> => {
    state.started = true
    state.signal = signal
    onStart()
    return new Promise<T>((res, rej) => {
      resolve = res
      reject = rej
      signal.addEventListener('abort', () => { state.aborted = true; rej(signal.reason) })
    })
  }
  return { attempt, state, started: startedP, resolve: (v: T) => resolve(v), reject: (e: unknown) => reject(e) }
}

const tick = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

t.test('shouldHedge: idempotent methods only, and only with budget room', async (t) => {
  t.ok(shouldHedge('GET'))
  t.ok(shouldHedge('PUT'))
  t.notOk(shouldHedge('POST'))
  t.notOk(shouldHedge('PATCH'))
  const budget = new RetryBudget({ minRetryConcurrency: 1 })
  t.ok(shouldHedge('GET', budget))
  budget.tryAcquire()
  t.notOk(shouldHedge('GET', budget))
  t.equal(budget.exhausted, 0, 'asking does not count as exhausted')
})

t.test('a first answer before the delay: no hedge', async (t) => {
  const a = fake<string>(); const b = fake<string>()
  const p = race(a.attempt, b.attempt, 1000)
  await a.started
  a.resolve('A')
  t.same(await p, { value: 'A', winner: 'first', hedged: false })
  t.notOk(b.state.started)
})

t.test('a slow first: the hedge wins and the first is aborted', async (t) => {
  const a = fake<string>(); const b = fake<string>()
  let hedges = 0
  const p = race(a.attempt, b.attempt, 10, { onHedge: () => hedges++ })
  await b.started
  t.equal(hedges, 1)
  b.resolve('B')
  t.same(await p, { value: 'B', winner: 'second', hedged: true })
  t.ok(a.state.aborted, 'the loser was aborted')
})

t.test('the first still wins if it answers after the hedge started; the hedge is aborted', async (t) => {
  const a = fake<string>(); const b = fake<string>()
  const p = race(a.attempt, b.attempt, 10)
  await b.started
  a.resolve('A')
  t.same(await p, { value: 'A', winner: 'first', hedged: true })
  t.ok(b.state.aborted)
})

t.test('first fails before the delay: the race rejects at once, no hedge', async (t) => {
  const a = fake<string>(); const b = fake<string>()
  const p = race(a.attempt, b.attempt, 1000)
  await a.started
  a.reject(new Error('A failed'))
  await t.rejects(p, { message: 'A failed' })
  await tick()
  t.notOk(b.state.started)
})

t.test('one fails after the hedge started: the other still answers', async (t) => {
  const a = fake<string>(); const b = fake<string>()
  const p = race(a.attempt, b.attempt, 10)
  await b.started
  a.reject(new Error('A failed'))
  await tick()
  b.resolve('B')
  t.same(await p, { value: 'B', winner: 'second', hedged: true })

  const c = fake<string>(); const d = fake<string>()
  const q = race(c.attempt, d.attempt, 10)
  await d.started
  d.reject(new Error('D failed'))
  await tick()
  c.resolve('C')
  t.same(await q, { value: 'C', winner: 'first', hedged: true })
})

t.test('both fail: the race rejects with the last error', async (t) => {
  const a = fake<string>(); const b = fake<string>()
  const p = race(a.attempt, b.attempt, 10)
  await b.started
  a.reject(new Error('A failed'))
  await tick()
  b.reject(new Error('B failed'))
  await t.rejects(p, { message: 'B failed' })
})

t.test('a client abort aborts both tries', async (t) => {
  const a = fake<string>(); const b = fake<string>()
  const client = new AbortController()
  const p = race(a.attempt, b.attempt, 10, { signal: client.signal })
  await b.started
  client.abort(new Error('client went away'))
  await t.rejects(p, { message: 'client went away' })
  t.ok(a.state.aborted)
  t.ok(b.state.aborted)
  const already = race(a.attempt, b.attempt, 10, { signal: client.signal })
  await t.rejects(already, { message: 'client went away' }, 'an aborted signal rejects at once')
})

t.test('hedges count against the retry budget', async (t) => {
  const budget = new RetryBudget({ minRetryConcurrency: 1, budgetPercent: 0 })
  const a = fake<string>(); const b = fake<string>()
  const p = race(a.attempt, b.attempt, 10, { budget })
  await b.started
  t.equal(budget.retries, 1, 'the hedge holds a slot')
  b.resolve('B')
  await p
  t.equal(budget.retries, 0, 'released when the race ends')

  budget.tryAcquire() // someone else holds the only slot
  const c = fake<string>(); const d = fake<string>()
  const q = race(c.attempt, d.attempt, 5, { budget })
  await new Promise((resolve) => setTimeout(resolve, 40))
  t.notOk(d.state.started, 'no budget, no hedge')
  t.equal(budget.exhausted, 1)
  c.resolve('C')
  t.same(await q, { value: 'C', winner: 'first', hedged: false })
  budget.release()

  const e = fake<string>(); const f = fake<string>()
  const r = race(e.attempt, f.attempt, 5, { budget })
  await f.started
  f.reject(new Error('F failed'))
  await tick()
  t.equal(budget.retries, 0, 'a failed hedge releases its slot at once')
  e.resolve('E')
  await r
})

t.test('a loser that resolved too late is handed to discard', async (t) => {
  const discarded: string[] = []
  const late = (v: string) => async (): Promise<string> => await new Promise((resolve) => setTimeout(() => resolve(v), 30))
  const b = fake<string>()
  // the first ignores its abort signal and resolves later anyway
  const p = race(late('A'), b.attempt, 5, { discard: (v) => discarded.push(v) })
  await b.started
  b.resolve('B')
  t.equal((await p).value, 'B')
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.same(discarded, ['A'])
})

t.test('a try that throws synchronously is a rejection', async (t) => {
  const b = fake<string>()
  await t.rejects(race(() => { throw new Error('sync') }, b.attempt, 1000), { message: 'sync' })
})
