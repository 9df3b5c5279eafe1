import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import type { Target } from '../../lib/upstream/target.js'
import { STRATEGIES, createBalancer, type PickContext, type Strategy } from '../../lib/balancers/index.js'
import { GatewayError } from '../../lib/errors.js'

const NOW = 1_700_000_000_000

function makePool (size: number, weight: (i: number) => number = () => 1): UpstreamPool {
  const pool = new UpstreamPool('test')
  for (let i = 0; i < size; i++) {
    pool.add({ id: `t${i}`, url: `http://127.0.0.1:${20000 + i}`, weight: weight(i) }).status = 'healthy'
  }
  return pool
}

/** consistent_hash needs a key per request; the other strategies ignore it. */
function ctxFor (strategy: Strategy, i: number, extra: Partial<PickContext> = {}): PickContext {
  return { now: NOW, hashKey: strategy === 'consistent_hash' ? `key-${i}` : undefined, ...extra }
}

t.test('createBalancer makes each strategy and rejects unknown names', async (t) => {
  for (const s of STRATEGIES) t.equal(createBalancer(s).strategy, s)
  let err: unknown
  try {
    createBalancer('fastest' as Strategy)
  } catch (e) {
    err = e
  }
  t.ok(err instanceof GatewayError, 'throws a GatewayError')
  t.match(err, { code: 'FHG_ERR_INVALID_CONFIG', message: /fastest.*|round_robin/ })
})

for (const strategy of STRATEGIES) {
  t.test(`${strategy}: skips unhealthy, draining, unknown-not-routable, circuit open, ejected, weight 0 and tried targets`, async (t) => {
    const pool = makePool(9)
    const [ok, unhealthy, draining, unknown, open, ejected, zero, tried, okToo] = pool.targets
    unhealthy.status = 'unhealthy'
    draining.status = 'draining'
    unknown.status = 'unknown'
    unknown.routableWhenUnknown = false
    open.circuit = 'open'
    ejected.ejectedUntil = NOW + 5_000
    pool.setWeight(zero.id, 0)
    for (const x of pool.targets) pool.touch(x)
    const b = createBalancer(strategy)
    const seen = new Set<Target>()
    let bad = 0
    for (let i = 0; i < 400; i++) {
      const picked = b.pick(pool, ctxFor(strategy, i, { tried: [tried] }))
      if (picked === ok || picked === okToo) seen.add(picked)
      else bad++
    }
    t.equal(bad, 0, 'every pick is one of the two usable targets')
    t.equal(seen.size, 2, 'both usable targets are used')

    // The ejection ends with time alone: the target comes back without a pool change.
    const later = new Set<Target>()
    for (let i = 0; i < 400; i++) {
      const picked = b.pick(pool, ctxFor(strategy, i, { now: NOW + 6_000 }))
      if (picked !== undefined) later.add(picked)
    }
    t.same([...later].map((x) => x.id).sort(), [ok.id, ejected.id, tried.id, okToo.id].sort())
  })

  t.test(`${strategy}: returns undefined when nothing is usable`, async (t) => {
    const b = createBalancer(strategy)
    t.equal(b.pick(new UpstreamPool('empty'), ctxFor(strategy, 1)), undefined, 'empty pool')
    const pool = makePool(3)
    t.equal(b.pick(pool, ctxFor(strategy, 1, { tried: pool.targets })), undefined, 'all tried')
    for (const x of pool.targets) {
      x.status = 'unhealthy'
      pool.touch(x)
    }
    for (let i = 0; i < 20; i++) t.equal(b.pick(pool, ctxFor(strategy, i)), undefined)
    const big = makePool(1000)
    for (const x of big.targets) {
      x.circuit = 'open'
      big.touch(x)
    }
    t.equal(b.pick(big, ctxFor(strategy, 7)), undefined, '1,000 targets, all open')
  })

  t.test(`${strategy}: pool of 1,000 targets, a third ineligible`, async (t) => {
    const pool = makePool(1000, (i) => 1 + (i % 5))
    for (const x of pool.targets) {
      if (x.index % 3 === 0) x.status = 'unhealthy'
      pool.touch(x)
    }
    const b = createBalancer(strategy)
    const counts = new Map<Target, number>()
    let bad = 0
    for (let i = 0; i < 30_000; i++) {
      const picked = b.pick(pool, ctxFor(strategy, i))
      if (picked === undefined || picked.status !== 'healthy') bad++
      else counts.set(picked, (counts.get(picked) ?? 0) + 1)
    }
    t.equal(bad, 0, 'never an ineligible target, never undefined')
    t.ok(counts.size > 600, `spreads over the usable targets (${counts.size} of 666 used)`)
  })

  t.test(`${strategy}: targets added, removed and re-weighted between picks`, async (t) => {
    const pool = makePool(50, (i) => 1 + (i % 3))
    const b = createBalancer(strategy)
    let next = 50
    let wrong = 0
    let none = 0
    let seed = 42
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648
    for (let i = 0; i < 5000; i++) {
      const picked = b.pick(pool, ctxFor(strategy, i % 300))
      if (picked === undefined) none++
      else if (pool.get(picked.id) !== picked || !picked.isEligible(NOW)) wrong++
      // Remove the target just picked (a pick in progress elsewhere keeps its own view).
      if (picked !== undefined && i % 7 === 0 && pool.size > 5) pool.remove(picked.id)
      if (i % 5 === 0) {
        const x = pool.add({ id: `n${next}`, url: `http://127.0.0.1:${30000 + next}`, weight: 1 + (next % 4) })
        x.status = 'healthy'
        next++
      }
      if (i % 11 === 0) pool.setWeight(pool.targets[Math.floor(rnd() * pool.size)].id, Math.floor(rnd() * 4))
      if (i % 13 === 0) {
        const x = pool.targets[Math.floor(rnd() * pool.size)]
        x.status = x.status === 'healthy' ? 'unhealthy' : 'healthy'
        pool.touch(x)
      }
      if (i % 17 === 0 && pool.size > 5) pool.remove(pool.targets[Math.floor(rnd() * pool.size)].id)
    }
    t.equal(wrong, 0, 'never a removed or ineligible target')
    t.equal(none, 0, 'always found one while some were usable')
  })
}

t.test('round_robin cycles in order, skipping unusable targets', async (t) => {
  const pool = makePool(4)
  pool.targets[2].status = 'unhealthy'
  const b = createBalancer('round_robin')
  const ids = Array.from({ length: 6 }, () => b.pick(pool, { now: NOW })?.id)
  t.same(ids, ['t0', 't1', 't3', 't0', 't1', 't3'])
  pool.remove('t3')
  t.equal(b.pick(pool, { now: NOW })?.id, 't0', 'cursor wraps after a removal')
})

t.test('random spreads over all targets (each of 4 gets 15-35 % of 4,000 picks)', async (t) => {
  const pool = makePool(4)
  const b = createBalancer('random')
  const counts = new Map<string, number>()
  for (let i = 0; i < 4000; i++) {
    const id = b.pick(pool, { now: NOW })?.id ?? 'none'
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  t.equal(counts.size, 4)
  for (const [id, c] of counts) t.ok(c >= 600 && c <= 1400, `${id}: ${c}`)
})

t.test('random is weighted by effective weight, slow start included', async (t) => {
  const pool = makePool(2, (i) => (i === 0 ? 3 : 1))
  const b = createBalancer('random')
  let heavy = 0
  for (let i = 0; i < 4000; i++) if (b.pick(pool, { now: NOW })?.id === 't0') heavy++
  t.ok(heavy > 2700 && heavy < 3300, `3:1 weights, heavy got ${heavy} of 4000`)

  const [a] = pool.targets
  a.slowStartFrom = NOW
  a.slowStartUntil = NOW + 10_000
  pool.touch(a)
  heavy = 0
  for (let i = 0; i < 4000; i++) if (b.pick(pool, { now: NOW })?.id === 't0') heavy++
  // effective 0.3 vs 1: expected share 23 %
  t.ok(heavy > 600 && heavy < 1300, `ramping heavy target got ${heavy} of 4000`)
})

t.test('random on 1,000 targets with 90 % out still finds the rest (probe then scan)', async (t) => {
  const pool = makePool(1000)
  for (const x of pool.targets) if (x.index % 10 !== 0) x.status = 'draining'
  const b = createBalancer('random')
  const seen = new Set<string>()
  let bad = 0
  for (let i = 0; i < 5000; i++) {
    const picked = b.pick(pool, { now: NOW })
    if (picked === undefined || picked.index % 10 !== 0) bad++
    else seen.add(picked.id)
  }
  t.equal(bad, 0, 'only usable targets')
  t.ok(seen.size > 90, `${seen.size} of 100 usable targets used`)
})
