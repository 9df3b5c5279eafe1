import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import type { Target } from '../../lib/upstream/target.js'
import { LeastConnectionsBalancer, ResponseTimeBalancer } from '../../lib/balancers/index.js'

const NOW = 1_700_000_000_000

function makePool (weights: number[]): UpstreamPool {
  const pool = new UpstreamPool('load')
  weights.forEach((weight, i) => {
    pool.add({ id: `t${i}`, url: `http://127.0.0.1:${23000 + i}`, weight }).status = 'healthy'
  })
  return pool
}

t.test('least_connections prefers the lowest inFlight / weight', async (t) => {
  const pool = makePool([1, 1, 1])
  const [a, b, c] = pool.targets
  a.inFlight = 4
  b.inFlight = 1
  c.inFlight = 2
  const lc = new LeastConnectionsBalancer()
  for (let i = 0; i < 10; i++) t.equal(lc.pick(pool, { now: NOW }), b)

  const weighted = makePool([4, 1])
  weighted.targets[0].inFlight = 4 // 4 / 4 = 1
  weighted.targets[1].inFlight = 2 // 2 / 1 = 2
  t.equal(lc.pick(weighted, { now: NOW }), weighted.targets[0], 'weight counts')
  t.equal(lc.pick(weighted, { now: NOW, tried: [weighted.targets[0]] }), weighted.targets[1], 'tried skipped')
})

t.test('least_connections: equal targets take turns, and load follows weight', async (t) => {
  const pool = makePool([1, 1, 1])
  const lc = new LeastConnectionsBalancer()
  const counts = new Map<Target, number>()
  for (let i = 0; i < 300; i++) {
    const x = lc.pick(pool, { now: NOW }) as Target
    counts.set(x, (counts.get(x) ?? 0) + 1)
  }
  t.same([...counts.values()], [100, 100, 100], 'idle ties rotate')

  // Requests that never finish: in flight ends up proportional to weight.
  const w = makePool([2, 1])
  for (let i = 0; i < 300; i++) lc.pick(w, { now: NOW })?.onRequestStart()
  t.same(w.targets.map((x) => x.inFlight), [200, 100])
})

t.test('least_connections slow start: a ramping target counts as lighter', async (t) => {
  const pool = makePool([1, 1])
  const [a, b] = pool.targets
  a.inFlight = 1
  b.inFlight = 1
  b.slowStartFrom = NOW
  b.slowStartUntil = NOW + 10_000
  const lc = new LeastConnectionsBalancer()
  for (let i = 0; i < 5; i++) t.equal(lc.pick(pool, { now: NOW }), a, 'b weighs 0.1: 1 / 0.1 > 1 / 1')
})

t.test('least_connections on 1,000 targets (power of two choices) favours the less loaded', async (t) => {
  const pool = makePool(Array.from({ length: 1000 }, () => 1))
  for (const x of pool.targets) x.inFlight = x.index % 10
  const lc = new LeastConnectionsBalancer()
  let sum = 0
  let busiest = 0
  for (let i = 0; i < 20_000; i++) {
    const x = lc.pick(pool, { now: NOW }) as Target
    sum += x.inFlight
    if (x.inFlight === 9) busiest++
  }
  // Pool mean 4.5; the better of two uniform draws averages 2.85.
  t.ok(sum / 20_000 < 3.3, `mean inFlight of picks ${(sum / 20_000).toFixed(2)}`)
  t.ok(busiest < 20_000 * 0.03, `busiest bucket picked ${busiest} times (only when both draws hit it)`)
})

t.test('response_time prefers the lower peak EWMA × (inFlight + 1)', async (t) => {
  const pool = makePool([1, 1])
  const [fast, slow] = pool.targets
  fast.recordLatency(10, NOW)
  slow.recordLatency(100, NOW)
  const rt = new ResponseTimeBalancer()
  for (let i = 0; i < 10; i++) t.equal(rt.pick(pool, { now: NOW }), fast)
  fast.inFlight = 20 // 10 × 21 = 210 > 100 × 1
  t.equal(rt.pick(pool, { now: NOW }), slow, 'a loaded fast target loses to an idle slow one')
})

t.test('response_time: a slow target that recovers gets picked again as its EWMA decays', async (t) => {
  const pool = makePool([1, 1])
  const [a, b] = pool.targets
  a.recordLatency(10, NOW)
  b.recordLatency(500, NOW)
  const rt = new ResponseTimeBalancer()
  let now = NOW
  let firstB = -1
  for (let step = 0; step < 120 && firstB < 0; step++) {
    now = NOW + step * 1000
    const x = rt.pick(pool, { now }) as Target
    x.onRequestStart()
    x.onRequestEnd(x === a ? 10 : 12, now) // b is fast again, but only a sample would show it
    if (x === b) firstB = step
  }
  // 500 × exp(-t / 10 s) < 10 ms once t > 10 s × ln 50 ≈ 39 s.
  t.ok(firstB >= 35 && firstB <= 45, `b is tried again after ${firstB} s`)
  // Once b answers fast it competes on equal terms.
  const counts = { a: 0, b: 0 }
  for (let i = 0; i < 200; i++) {
    now += 50
    const x = rt.pick(pool, { now }) as Target
    x.onRequestStart()
    x.onRequestEnd(10, now)
    counts[x === a ? 'a' : 'b']++
  }
  t.ok(counts.b > 50, `b gets ${counts.b} of 200 back`)
})

t.test('response_time: an unsampled target is tried but cannot take all traffic', async (t) => {
  const pool = makePool([1, 1])
  const [old, fresh] = pool.targets
  old.recordLatency(20, NOW)
  const rt = new ResponseTimeBalancer()
  t.equal(rt.pick(pool, { now: NOW }), fresh, 'no sample yet: tried first')
  fresh.onRequestStart()
  for (let i = 0; i < 10; i++) t.equal(rt.pick(pool, { now: NOW }), old, 'its first answer is pending: others go elsewhere')
  fresh.onRequestEnd(80, NOW + 1)
  t.equal(rt.pick(pool, { now: NOW + 2 }), old, 'once sampled it competes (80 ms > 20 ms)')

  // All unsampled and busy: spread by in-flight count instead of piling on one.
  const cold = makePool([1, 1, 1])
  for (let i = 0; i < 30; i++) rt.pick(cold, { now: NOW })?.onRequestStart()
  t.same(cold.targets.map((x) => x.inFlight), [10, 10, 10])
})

t.test('response_time on 1,000 targets (power of two choices) favours lower latency', async (t) => {
  const pool = makePool(Array.from({ length: 1000 }, () => 1))
  for (const x of pool.targets) x.recordLatency(10 + (x.index % 10) * 10, NOW)
  const rt = new ResponseTimeBalancer()
  let sum = 0
  for (let i = 0; i < 20_000; i++) sum += (rt.pick(pool, { now: NOW }) as Target).ewmaAt(NOW)
  // Pool mean 55 ms; the better of two uniform draws averages 38.5 ms.
  t.ok(sum / 20_000 < 42, `mean EWMA of picks ${(sum / 20_000).toFixed(1)} ms`)
})
