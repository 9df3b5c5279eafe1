import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { WeightedRoundRobinBalancer, smoothSchedule } from '../../lib/balancers/index.js'

const NOW = 1_700_000_000_000

function makePool (weights: number[]): UpstreamPool {
  const pool = new UpstreamPool('wrr')
  weights.forEach((weight, i) => {
    pool.add({ id: String.fromCharCode(97 + i), url: `http://127.0.0.1:${21000 + i}`, weight }).status = 'healthy'
  })
  return pool
}

function picks (b: WeightedRoundRobinBalancer, pool: UpstreamPool, count: number, now = NOW): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) out.push(b.pick(pool, { now })?.id ?? '-')
  return out
}

function tally (ids: string[]): Record<string, number> {
  const c: Record<string, number> = {}
  for (const id of ids) c[id] = (c[id] ?? 0) + 1
  return c
}

/** nginx's ngx_http_upstream_get_peer, verbatim in spirit: the reference the schedule must match. */
function nginx (weights: number[], count: number): number[] {
  const cur = weights.map(() => 0)
  const total = weights.reduce((a, b) => a + b, 0)
  const out: number[] = []
  for (let s = 0; s < count; s++) {
    let best = -1
    for (let i = 0; i < weights.length; i++) {
      if (weights[i] === 0) continue
      cur[i] += weights[i]
      if (best < 0 || cur[i] > cur[best]) best = i
    }
    cur[best] -= total
    out.push(best)
  }
  return out
}

t.test('3:1 is exact over 400 picks and interleaved: a a b a, never a a a b', async (t) => {
  const pool = makePool([3, 1])
  const seq = picks(new WeightedRoundRobinBalancer(), pool, 400)
  t.same(tally(seq), { a: 300, b: 100 })
  for (let c = 0; c < 100; c++) t.same(seq.slice(4 * c, 4 * c + 4), ['a', 'a', 'b', 'a'], `cycle ${c}`)
})

t.test('5:1:1 spreads the heavy target out (nginx: a a b a c a a, not a a a a a b c)', async (t) => {
  const seq = picks(new WeightedRoundRobinBalancer(), makePool([5, 1, 1]), 700)
  t.same(seq.slice(0, 7), ['a', 'a', 'b', 'a', 'c', 'a', 'a'])
  t.same(tally(seq), { a: 500, b: 100, c: 100 })
  const longestRun = Math.max(...seq.join('').split(/[bc]/).map((r) => r.length))
  t.ok(longestRun <= 4, `longest run of a is ${longestRun}`)
})

t.test('the precomputed cycle is nginx\'s sequence, tie-breaks included', async (t) => {
  const cases = [[5, 1, 1], [3, 1], [1, 1, 1], [4, 2, 6], [7, 3, 3, 2, 2, 2, 1, 5, 3, 7]]
  for (const w of cases) {
    const total = w.reduce((a, b) => a + b, 0)
    const cycle = Array.from(smoothSchedule(w) ?? [])
    // The cycle is reduced by the gcd, so nginx's `total` picks are whole repeats of it.
    const repeated = Array.from({ length: total }, (_, i) => cycle[i % cycle.length])
    t.same(repeated, nginx(w, total), `weights ${w.join(',')}`)
  }
  // Reduced by the gcd: 6:2 runs the 3:1 cycle.
  t.same(Array.from(smoothSchedule([6, 2]) ?? []), [0, 0, 1, 0])
  // Fractional weights are scaled to integers.
  t.same(Array.from(smoothSchedule([1.5, 0.5]) ?? []), [0, 0, 1, 0])
  const big = Array.from({ length: 1000 }, (_, i) => 1 + ((i * 7) % 10))
  const total = big.reduce((a, b) => a + b, 0)
  t.same(Array.from(smoothSchedule(big) ?? []), nginx(big, total), '1,000 targets, weights 1..10')
  t.equal(smoothSchedule([Math.PI, 1]), undefined, 'irrational weights: no schedule (live pass)')
})

t.test('1,000 targets: one cycle gives each target exactly its weight', async (t) => {
  const weights = Array.from({ length: 1000 }, (_, i) => 1 + (i % 10))
  const pool = new UpstreamPool('big')
  weights.forEach((weight, i) => { pool.add({ id: `t${i}`, url: `http://127.0.0.1:${22000 + i}`, weight }).status = 'healthy' })
  const b = new WeightedRoundRobinBalancer()
  const total = weights.reduce((a, c) => a + c, 0)
  const counts = tally(picks(b, pool, total * 2))
  let off = 0
  weights.forEach((w, i) => { if (counts[`t${i}`] !== 2 * w) off++ })
  t.equal(off, 0, 'every target got exactly 2 × weight over two cycles')
})

t.test('with one target ineligible the others share in proportion', async (t) => {
  const pool = makePool([3, 1, 2])
  pool.targets[2].status = 'unhealthy'
  pool.touch(pool.targets[2])
  t.same(tally(picks(new WeightedRoundRobinBalancer(), pool, 400)), { a: 300, b: 100 })

  // The heavy one out: most of the weight gone, the live nginx pass keeps the ratio.
  const heavy = makePool([1, 2, 100])
  heavy.targets[2].circuit = 'open'
  heavy.touch(heavy.targets[2])
  t.same(tally(picks(new WeightedRoundRobinBalancer(), heavy, 300)), { a: 100, b: 200 })

  // Tried targets are skipped for that request only.
  const b = new WeightedRoundRobinBalancer()
  const p = makePool([3, 1])
  for (let i = 0; i < 20; i++) t.equal(b.pick(p, { now: NOW, tried: [p.targets[0]] })?.id, 'b')
})

t.test('a status-only change keeps the cycle going (no rebuild, no restart)', async (t) => {
  const pool = makePool([3, 1])
  const b = new WeightedRoundRobinBalancer()
  const first = picks(b, pool, 2)
  pool.touch(pool.targets[1])
  const rest = picks(b, pool, 6)
  t.same([...first, ...rest], ['a', 'a', 'b', 'a', 'a', 'a', 'b', 'a'])
})

t.test('re-weighting, adding and removing take effect on the next pick', async (t) => {
  const pool = makePool([3, 1])
  const b = new WeightedRoundRobinBalancer()
  picks(b, pool, 3)
  pool.setWeight('a', 1)
  t.same(tally(picks(b, pool, 400)), { a: 200, b: 200 })
  pool.add({ id: 'c', url: 'http://127.0.0.1:21100', weight: 2 }).status = 'healthy'
  t.same(tally(picks(b, pool, 400)), { a: 100, b: 100, c: 200 })
  pool.remove('a')
  t.same(tally(picks(b, pool, 300)), { b: 100, c: 200 })
})

t.test('slow start lowers a ramping target\'s share, then it gets its full share', async (t) => {
  const pool = makePool([1, 1])
  const [, b] = pool.targets
  b.slowStartFrom = NOW
  b.slowStartUntil = NOW + 30_000
  pool.touch(b)
  const wrr = new WeightedRoundRobinBalancer()
  // At the start of the ramp b weighs 0.1: 1 pick in 11.
  const early = tally(picks(wrr, pool, 1100, NOW))
  t.ok(early.b >= 90 && early.b <= 110, `b got ${early.b} of 1100 at 10 %`)
  const mid = tally(picks(wrr, pool, 1000, NOW + 15_000))
  t.ok(mid.b > 300 && mid.b < 400, `b got ${mid.b} of 1000 at 55 %`)
  // Ramp over: no pool change needed, the schedule takes over again.
  t.same(tally(picks(wrr, pool, 400, NOW + 31_000)), { a: 200, b: 200 })
})

t.test('ejections starting and expiring between picks never leave a pick empty', async (t) => {
  const pool = makePool([5, 3, 2])
  const wrr = new WeightedRoundRobinBalancer()
  const all: string[] = []
  for (let round = 0; round < 20; round++) {
    const x = pool.targets[round % 3]
    x.ejectedUntil = NOW + round * 1000 + 500
    pool.touch(x)
    all.push(...picks(wrr, pool, 100, NOW + round * 1000))
  }
  t.notOk(all.includes('-'), 'always a target')
})
