// Times Balancer.pick() per strategy at pool sizes 10 and 1,000: node --import tsx bench/pick.ts
// (goal, issue 2: under 1 µs per pick at 1,000 targets for every strategy)
import { UpstreamPool } from '../lib/upstream/pool.js'
import { STRATEGIES, type PickContext, type Strategy } from '../lib/balancers/types.js'
import { createBalancer } from '../lib/balancers/index.js'

const PICKS = 1_000_000
const WARMUP = 200_000
/** Simulated ms the warm-up of a 'live' ramp case spans. */
const WARMUP_MS = 1_000
const KEYS = Array.from({ length: 4096 }, (_, i) => `client-${i}`)

interface Case {
  label: string
  strategy: Strategy
  size: number
  weights: 'equal' | 'mixed'
  /** One target in slow start: 'hour' (the clock stands still), or 'live' (a 10 s ramp runs its course during the timed picks, rebuilds included). */
  ramp?: 'hour' | 'live'
  /** Share of targets drained (weight gone from the pool). */
  drained?: number
}

function makePool (c: Case, now: number): UpstreamPool {
  const pool = new UpstreamPool('bench')
  for (let i = 0; i < c.size; i++) {
    const t = pool.add({ id: `t${i}`, url: `http://127.0.0.1:${10000 + i}`, weight: c.weights === 'mixed' ? 1 + (i % 10) : 1 })
    t.status = 'healthy'
    t.inFlight = i % 7
    t.recordLatency(5 + (i % 13), now - 1000)
  }
  if (c.ramp !== undefined) {
    // One target in slow start: its effective weight moves with the clock.
    const t = pool.targets[0]
    t.slowStartFrom = now
    t.slowStartUntil = now + (c.ramp === 'hour' ? 3_600_000 : WARMUP_MS + 10_000)
    pool.touch(t)
  }
  if (c.drained !== undefined) {
    for (const t of pool.targets) if (t.index % 100 >= 100 * (1 - c.drained)) { t.status = 'draining'; pool.touch(t) }
  }
  return pool
}

function run (c: Case): number {
  const now = Date.now()
  const pool = makePool(c, now)
  const balancer = createBalancer(c.strategy)
  const ctx: PickContext = { now, tried: [], hashKey: undefined }
  const hashed = c.strategy === 'consistent_hash'
  // 'live' ramp: the clock runs WARMUP_MS during the warm-up, then 10 s over the timed picks
  const warmStep = c.ramp === 'live' ? WARMUP_MS / WARMUP : 0
  const step = c.ramp === 'live' ? 10_000 / PICKS : 0
  let sink = 0
  for (let i = 0; i < WARMUP; i++) {
    if (hashed) ctx.hashKey = KEYS[i & 4095]
    ctx.now += warmStep
    sink += balancer.pick(pool, ctx)?.index ?? 0
  }
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < PICKS; i++) {
    if (hashed) ctx.hashKey = KEYS[i & 4095]
    ctx.now += step
    sink += balancer.pick(pool, ctx)?.index ?? 0
  }
  const ns = Number(process.hrtime.bigint() - t0) / PICKS
  if (sink < 0) console.log(sink) // keep the loop observable
  return ns
}

const cases: Case[] = []
for (const strategy of STRATEGIES) {
  for (const size of [10, 1000]) cases.push({ label: strategy, strategy, size, weights: 'equal' })
}
for (const size of [10, 1000]) {
  cases.push({ label: 'weighted_round_robin, weights 1..10', strategy: 'weighted_round_robin', size, weights: 'mixed' })
  cases.push({ label: 'weighted_round_robin, slow start (clock still)', strategy: 'weighted_round_robin', size, weights: 'mixed', ramp: 'hour' })
  cases.push({ label: 'weighted_round_robin, a 10 s ramp runs (rebuilds incl.)', strategy: 'weighted_round_robin', size, weights: 'mixed', ramp: 'live' })
  cases.push({ label: 'weighted_round_robin, 90 % drained (cycle over the rest)', strategy: 'weighted_round_robin', size, weights: 'mixed', drained: 0.9 })
  cases.push({ label: 'least_connections, slow start (clock still)', strategy: 'least_connections', size, weights: 'mixed', ramp: 'hour' })
  cases.push({ label: 'random, weights 1..10', strategy: 'random', size, weights: 'mixed' })
}

console.log(`node ${process.version}, ${PICKS.toLocaleString('en')} picks per row after ${WARMUP.toLocaleString('en')} warm-up`)
console.log('strategy'.padEnd(58) + 'n=10'.padStart(12) + 'n=1000'.padStart(12))
const rows = new Map<string, number[]>()
for (const c of cases) {
  const ns = run(c)
  const row = rows.get(c.label) ?? []
  row.push(ns)
  rows.set(c.label, row)
}
for (const [label, [a, b]] of rows) {
  console.log(label.padEnd(58) + `${a.toFixed(1)} ns`.padStart(12) + `${b.toFixed(1)} ns`.padStart(12))
}
