import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import type { Target } from '../../lib/upstream/target.js'
import { ConsistentHashBalancer, hash32 } from '../../lib/balancers/index.js'

const NOW = 1_700_000_000_000
const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`)

function makePool (size: number, weight: (i: number) => number = () => 1): UpstreamPool {
  const pool = new UpstreamPool('hash')
  for (let i = 0; i < size; i++) {
    pool.add({ id: `node-${i}`, url: `http://127.0.0.1:${24000 + i}`, weight: weight(i) }).status = 'healthy'
  }
  return pool
}

function owners (b: ConsistentHashBalancer, pool: UpstreamPool): Array<string | undefined> {
  return KEYS.map((hashKey) => b.pick(pool, { now: NOW, hashKey })?.id)
}

t.test('hash32 is a stable 32-bit hash', async (t) => {
  t.equal(hash32('user-1'), hash32('user-1'))
  t.not(hash32('user-1'), hash32('user-2'))
  const h = hash32('x')
  t.ok(Number.isInteger(h) && h >= 0 && h < 2 ** 32)
})

t.test('the same key always lands on the same target, and keys spread evenly', async (t) => {
  const pool = makePool(10)
  const b = new ConsistentHashBalancer()
  const first = owners(b, pool)
  t.same(owners(b, pool), first, 'sticky')
  t.same(owners(new ConsistentHashBalancer(), pool), first, 'same ring in another balancer (another node)')
  const counts = new Map<string | undefined, number>()
  for (const id of first) counts.set(id, (counts.get(id) ?? 0) + 1)
  t.equal(counts.size, 10)
  for (const [id, c] of counts) t.ok(c > 650 && c < 1400, `${String(id)} owns ${c} of 10,000`)
})

for (const n of [5, 10]) {
  t.test(`removing one of ${n} targets remaps at most 1/n + 5 % of 10,000 keys, only its own`, async (t) => {
    const pool = makePool(n)
    const b = new ConsistentHashBalancer()
    const before = owners(b, pool)
    pool.remove('node-2')
    const after = owners(b, pool)
    let moved = 0
    let movedOthers = 0
    for (let i = 0; i < KEYS.length; i++) {
      if (before[i] === after[i]) continue
      moved++
      if (before[i] !== 'node-2') movedOthers++
    }
    t.ok(moved <= KEYS.length * (1 / n + 0.05), `${moved} of 10,000 moved`)
    t.equal(movedOthers, 0, 'keys of the other targets stay')
    t.notOk(after.includes('node-2'))

    pool.add({ id: 'node-2', url: 'http://127.0.0.1:24002' }).status = 'healthy'
    t.same(owners(b, pool), before, 'adding it back restores the mapping')
  })
}

t.test('an unusable owner hands its keys to the next target and takes them back when it returns', async (t) => {
  const pool = makePool(10)
  const b = new ConsistentHashBalancer()
  const before = owners(b, pool)
  const sick = pool.get('node-3') as Target
  sick.status = 'unhealthy'
  pool.touch(sick)
  const during = owners(b, pool)
  t.same(owners(b, pool), during, 'failover owner is sticky too')
  let moved = 0
  let stuck = 0
  let wronglyMoved = 0
  for (let i = 0; i < KEYS.length; i++) {
    if (before[i] === 'node-3') {
      if (during[i] === 'node-3' || during[i] === undefined) stuck++
      moved++
    } else if (during[i] !== before[i]) {
      wronglyMoved++
    }
  }
  t.ok(moved > 0, `${moved} keys handed over`)
  t.equal(stuck, 0, 'none left on the sick target')
  t.equal(wronglyMoved, 0, 'keys of healthy owners stay')
  // A key whose owner was tried by this request goes to the ring's next target.
  const k = KEYS[before.indexOf('node-5')]
  const alt = b.pick(pool, { now: NOW, hashKey: k, tried: [pool.get('node-5') as Target] })
  t.ok(alt !== undefined && alt.id !== 'node-5' && alt.id !== 'node-3')
  sick.status = 'healthy'
  pool.touch(sick)
  t.same(owners(b, pool), before)
})

t.test('the ring is rebuilt on membership and weight changes, not on status changes', async (t) => {
  const pool = makePool(5)
  const b = new ConsistentHashBalancer()
  const ring = (): Uint32Array => (b as unknown as { hashes: Uint32Array }).hashes
  b.pick(pool, { now: NOW, hashKey: 'k' })
  const built = ring()
  const x = pool.targets[1]
  x.status = 'draining'
  pool.touch(x)
  x.circuit = 'open'
  pool.touch(x)
  b.pick(pool, { now: NOW, hashKey: 'k' })
  t.equal(ring(), built, 'status changes keep the ring')
  pool.setWeight(x.id, 3)
  b.pick(pool, { now: NOW, hashKey: 'k' })
  t.not(ring(), built, 'a weight change rebuilds it')
  t.equal(ring().length, Math.round(160 * 3 / (7 / 5)) + 4 * Math.round(160 / (7 / 5)), 'virtual nodes scale with weight')
})

t.test('a heavier target owns proportionally more keys', async (t) => {
  const pool = makePool(4, (i) => (i === 0 ? 3 : 1))
  const counts = new Map<string | undefined, number>()
  for (const id of owners(new ConsistentHashBalancer(), pool)) counts.set(id, (counts.get(id) ?? 0) + 1)
  const heavy = counts.get('node-0') ?? 0
  t.ok(heavy > 4300 && heavy < 5700, `weight 3 of 6 owns ${heavy} of 10,000`)
})

t.test('1,000 targets: removal remaps about 1/n, and 95 % of targets out still resolves', async (t) => {
  const pool = makePool(1000)
  const b = new ConsistentHashBalancer()
  const before = owners(b, pool)
  pool.remove('node-500')
  const after = owners(b, pool)
  let moved = 0
  for (let i = 0; i < KEYS.length; i++) if (before[i] !== after[i]) moved++
  t.ok(moved <= KEYS.length * (1 / 1000 + 0.05), `${moved} of 10,000 moved`)

  for (const x of pool.targets) {
    if (x.index % 20 !== 0) x.status = 'unhealthy'
    pool.touch(x)
  }
  const out = owners(b, pool)
  t.equal(out.filter((id) => id === undefined || (pool.get(id) as Target).status !== 'healthy').length, 0,
    'every key resolves to a healthy target')
  t.same(owners(b, pool), out, 'deterministic')
})

t.test('without a hash key it behaves as round robin', async (t) => {
  const pool = makePool(3)
  const b = new ConsistentHashBalancer()
  t.same([0, 1, 2, 3].map(() => b.pick(pool, { now: NOW })?.id), ['node-0', 'node-1', 'node-2', 'node-0'])
})
