// Target's narrow writers: each writes its fields and announces the change to the pool that holds the
// target, once and after the write (balancers rebuild on the version, listeners see a whole change).
import t from 'tap'
import { UpstreamPool, type PoolChange } from '../../lib/upstream/pool.js'
import type { Target } from '../../lib/upstream/target.js'

const NOW = 1_700_000_000_000

function setup (): { pool: UpstreamPool, a: Target, changes: PoolChange[], seen: Array<Record<string, unknown>> } {
  const pool = new UpstreamPool('u', [{ id: 'a', url: 'http://127.0.0.1:1001', weight: 10 }, { id: 'b', url: 'http://127.0.0.1:1002' }])
  const changes: PoolChange[] = []
  const seen: Array<Record<string, unknown>> = []
  // what a listener sees when the change is announced: the fields already written
  pool.on('change', (c: PoolChange) => {
    changes.push(c)
    const x = c.target
    seen.push({ status: x.status, circuit: x.circuit, halfOpenFull: x.halfOpenFull, ejectedUntil: x.ejectedUntil, slowStartUntil: x.slowStartUntil })
  })
  return { pool, a: pool.get('a')!, changes, seen }
}

interface Row {
  name: string
  prepare?: (a: Target) => void
  write: (a: Target) => void
  /** Announcements expected (0: the write changes no eligibility input). */
  bumps: number
  check: (a: Target) => Record<string, unknown>
  want: Record<string, unknown>
}

const rows: Row[] = [
  { name: 'setStatus', write: (a) => a.setStatus('unhealthy'), bumps: 1, check: (a) => ({ status: a.status, eligible: a.isEligible(NOW) }), want: { status: 'unhealthy', eligible: false } },
  {
    name: 'setStatus with a slow start ramp',
    write: (a) => a.setStatus('healthy', { from: NOW, until: NOW + 10_000 }),
    bumps: 1,
    check: (a) => ({ status: a.status, from: a.slowStartFrom, until: a.slowStartUntil, start: a.effectiveWeight(NOW), half: a.effectiveWeight(NOW + 5_000), end: a.effectiveWeight(NOW + 10_000) }),
    want: { status: 'healthy', from: NOW, until: NOW + 10_000, start: 1, half: 5.5, end: 10 },
  },
  { name: 'setRoutableWhenUnknown', prepare: (a) => a.setStatus('unknown'), write: (a) => a.setRoutableWhenUnknown(false), bumps: 1, check: (a) => ({ r: a.routableWhenUnknown, eligible: a.isEligible(NOW) }), want: { r: false, eligible: false } },
  { name: 'eject', write: (a) => a.eject(NOW + 5_000), bumps: 1, check: (a) => ({ until: a.ejectedUntil, now: a.isEligible(NOW), after: a.isEligible(NOW + 5_000) }), want: { until: NOW + 5_000, now: false, after: true } },
  { name: 'readmit', prepare: (a) => a.eject(NOW + 5_000), write: (a) => a.readmit(), bumps: 1, check: (a) => ({ until: a.ejectedUntil, eligible: a.isEligible(NOW) }), want: { until: 0, eligible: true } },
  { name: 'setCircuit open', write: (a) => a.setCircuit('open'), bumps: 1, check: (a) => ({ c: a.circuit, eligible: a.isEligible(NOW), routable: a.isRoutable(NOW) }), want: { c: 'open', eligible: false, routable: false } },
  {
    name: 'setCircuit frees the trial slots',
    prepare: (a) => { a.setCircuit('half_open'); a.setHalfOpenFull(true) },
    write: (a) => a.setCircuit('half_open'),
    bumps: 1,
    check: (a) => ({ c: a.circuit, full: a.halfOpenFull, eligible: a.isEligible(NOW) }),
    want: { c: 'half_open', full: false, eligible: true },
  },
  { name: 'setHalfOpenFull when it changes', prepare: (a) => a.setCircuit('half_open'), write: (a) => a.setHalfOpenFull(true), bumps: 1, check: (a) => ({ full: a.halfOpenFull, eligible: a.isEligible(NOW), routable: a.isRoutable(NOW) }), want: { full: true, eligible: false, routable: true } },
  { name: 'setHalfOpenFull unchanged: no announcement', write: (a) => a.setHalfOpenFull(false), bumps: 0, check: (a) => ({ full: a.halfOpenFull }), want: { full: false } },
  { name: 'resetCircuit from open', prepare: (a) => a.setCircuit('open'), write: (a) => a.resetCircuit(3), bumps: 1, check: (a) => ({ c: a.circuit, full: a.halfOpenFull, cap: a.maxInFlight }), want: { c: 'closed', full: false, cap: 3 } },
  { name: 'resetCircuit already closed: the cap only, no announcement', write: (a) => a.resetCircuit(2), bumps: 0, check: (a) => ({ c: a.circuit, cap: a.maxInFlight }), want: { c: 'closed', cap: 2 } },
  { name: 'setMetadata: not an eligibility input', write: (a) => a.setMetadata({ zone: 'x' }), bumps: 0, check: (a) => ({ m: a.metadata }), want: { m: { zone: 'x' } } },
  { name: 'setMetadata undefined: empty', prepare: (a) => a.setMetadata({ zone: 'x' }), write: (a) => a.setMetadata(undefined), bumps: 0, check: (a) => ({ m: a.metadata }), want: { m: {} } },
]

for (const row of rows) {
  t.test(row.name, async (t) => {
    const { pool, a, changes, seen } = setup()
    a.setStatus('healthy')
    row.prepare?.(a)
    const version = pool.version
    const before = changes.length
    row.write(a)
    t.same(row.check(a), row.want)
    t.equal(pool.version - version, row.bumps, `${row.bumps} version bump(s)`)
    t.equal(changes.length - before, row.bumps, 'one change event per bump')
    for (const c of changes.slice(before)) {
      t.same(c, { type: 'status', target: a }, 'a status change of this target')
    }
    if (row.bumps > 0) {
      const x = seen.at(-1)!
      t.same(x, { status: a.status, circuit: a.circuit, halfOpenFull: a.halfOpenFull, ejectedUntil: a.ejectedUntil, slowStartUntil: a.slowStartUntil }, 'announced after every field was written')
    }
  })
}

t.test('a removed target announces nothing; added again, it announces to its pool', async (t) => {
  const { pool, a } = setup()
  pool.remove('a')
  const v = pool.version
  a.setStatus('unhealthy')
  a.eject(NOW + 1000)
  a.setCircuit('open')
  t.equal(pool.version, v, 'no bump of the pool it left')
  t.equal(a.status, 'unhealthy', 'the fields are written all the same')

  const other = new UpstreamPool('v')
  other.add(a)
  const v2 = other.version
  a.readmit()
  t.equal(other.version, v2 + 1, 'the pool that holds it now hears of it')
  t.equal(pool.version, v)
})

t.test('weight goes through the pool; reconcile keeps the Target and sets metadata without a status change', async (t) => {
  const { pool, a, changes } = setup()
  const before = changes.length
  pool.reconcile([{ id: 'a', url: 'http://127.0.0.1:1001', weight: 10, metadata: { v: 2 } }, { id: 'b', url: 'http://127.0.0.1:1002' }])
  t.equal(pool.get('a'), a)
  t.same(a.metadata, { v: 2 })
  t.equal(changes.length, before, 'same weights, new metadata: no change event')
  pool.setWeight('a', 4)
  t.same(changes.at(-1), { type: 'weight', target: a, previous: 10 })
})
