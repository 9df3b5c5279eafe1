// MemoryStore keeps memory bounded: expired keys are dropped by reads, by the sweep timer and by sweep() in chunks.
import t from 'tap'
import { MemoryStore } from '../../lib/ratelimit/memory-store.js'
import { ExpiringMap, type Expiring } from '../../lib/ratelimit/expiring-map.js'
import { EPOCH_MS } from '../../lib/ratelimit/grant.js'
import { ALGORITHMS, type LimitRule } from '../../lib/ratelimit/types.js'

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

t.test('100,000 distinct keys leave no entry behind once their windows have passed', async (t) => {
  let now = EPOCH_MS + 86_400_000
  const store = new MemoryStore({ now: () => now })
  t.teardown(() => store.close())
  const rules = ALGORITHMS.map((algorithm): LimitRule => ({ algorithm, limit: 5, window: 1000 }))
  for (let i = 0; i < 100_000; i++) {
    store.consumeSync(`client-${i}`, rules[i % 3], 1)
    if (i % 1000 === 0) now += 7 // spread over 700 ms
  }
  t.equal(store.size, 100_000)
  now += 1000
  store.sweep()
  t.ok(store.size > 0 && store.size < 100_000, `fixed windows and refilled buckets gone first: ${store.size} left`)
  now += 1100 // past every sliding window's next window too
  t.equal(store.sweep(), true)
  t.equal(store.size, 0)
})

t.test('sweep works in chunks and reports when it is done', async (t) => {
  let now = EPOCH_MS + 86_400_000
  const store = new MemoryStore({ now: () => now })
  t.teardown(() => store.close())
  const rule: LimitRule = { algorithm: 'fixed_window', limit: 5, window: 1000 }
  for (let i = 0; i < 25_000; i++) store.consumeSync(`c${i}`, rule, 1)
  now += 2000
  t.equal(store.sweep(10_000), false)
  t.equal(store.size, 15_000)
  t.equal(store.sweep(10_000), false)
  t.equal(store.sweep(10_000), true)
  t.equal(store.size, 0)
})

t.test('the sweep timer drops expired keys on its own; close() stops it', async (t) => {
  let now = EPOCH_MS + 86_400_000
  const store = new MemoryStore({ now: () => now, sweepInterval: 20 })
  const rule: LimitRule = { algorithm: 'token_bucket', limit: 10, window: 100 }
  for (let i = 0; i < 1000; i++) store.consumeSync(`c${i}`, rule, 1)
  t.equal(store.size, 1000)
  now += 200
  await sleep(80)
  t.equal(store.size, 0, 'swept without a read')
  await store.close()
  store.consumeSync('after-close', rule, 1)
  t.equal(store.size, 1, 'still answers after close (a fallback may outlive it briefly)')
})

t.test('a hot key stays alive and correct; a refused key stores nothing', async (t) => {
  let now = EPOCH_MS + 86_400_000
  const store = new MemoryStore({ now: () => now })
  t.teardown(() => store.close())
  const rule: LimitRule = { algorithm: 'sliding_window', limit: 10, window: 1000 }
  let passed = 0
  for (let i = 0; i < 200; i++) {
    if (store.consumeSync('hot', rule, 1).allowed) passed++
    now += 50
    store.sweep()
  }
  t.equal(store.size, 1)
  // Saturated at 2x the limit the estimate floors to ~limit - 1 per window (91 here): never above
  t.ok(passed >= 85 && passed <= 100, `~10 per second over 10 s: ${passed}`)
  t.notOk(store.consumeSync('greedy', rule, 11).allowed)
  t.equal(store.size, 1, 'a refusal created no entry')
})

t.test('ExpiringMap: filings move with the expiry, stale ones are skipped, a clock going back is harmless', async (t) => {
  class E implements Expiring { expiresAt = 0; bucket = -1; constructor (e: number) { this.expiresAt = e } }
  const dropped: string[] = []
  const map = new ExpiringMap<E>(10, 0, (k) => dropped.push(k))
  const a = new E(15)
  map.set('a', a)
  map.set('b', new E(25))
  a.expiresAt = 45
  map.schedule('a', a) // filed again under a later bucket; the first filing goes stale
  map.sweep(30)
  t.same(dropped, ['b'])
  t.equal(map.get('a', 30), a)
  t.equal(map.get('a', 45), undefined, 'a read drops an expired entry')
  t.same(dropped, ['b', 'a'])
  map.set('c', new E(5)) // expiry in an already swept bucket: filed under the next one
  t.equal(map.sweep(40), true)
  t.same(dropped, ['b', 'a', 'c'])
  t.equal(map.size, 0)
})
