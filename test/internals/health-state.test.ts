import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { HealthRegistry } from '../../lib/health/registry.js'
import type { HealthEvent, TransitionEvent } from '../../lib/health/events.js'

const T = { healthy: 2, unhealthy: 3 }

function setup (slowStart = 0): { pool: UpstreamPool, registry: HealthRegistry, events: HealthEvent[] } {
  const pool = new UpstreamPool('users', [
    { id: 'a', url: 'http://127.0.0.1:1' },
    { id: 'b', url: 'http://127.0.0.1:2' },
  ])
  const registry = new HealthRegistry()
  registry.forPool(pool, { slowStart })
  const events: HealthEvent[] = []
  registry.subscribe((e) => events.push(e))
  return { pool, registry, events }
}

t.test('the first verdict decides from unknown, with no slow start for targets present at boot', async (t) => {
  const { pool, registry, events } = setup(30_000)
  const h = registry.get('users')!
  const a = pool.get('a')!
  t.equal(a.status, 'unknown')
  const v0 = pool.version
  h.recordProbe(a, true, undefined, T, 1000)
  t.equal(a.status, 'healthy')
  t.equal(a.slowStartUntil, 0, 'no slow start at boot')
  t.ok(pool.version > v0, 'pool.touch bumped the version')
  t.same(events.map((e) => [e.type, (e as TransitionEvent).from, (e as TransitionEvent).to]), [['transition', 'unknown', 'healthy']])
  const b = pool.get('b')!
  h.recordProbe(b, false, 'ECONNREFUSED', T, 1000)
  t.equal(b.status, 'unhealthy', 'one failure decides from unknown')
  t.equal(h.record(b).lastError, 'ECONNREFUSED')
})

t.test('hysteresis: unhealthyThreshold failures to fall, healthyThreshold passes to rise, one event each', async (t) => {
  const { pool, registry, events } = setup(5_000)
  const h = registry.get('users')!
  const a = pool.get('a')!
  h.recordProbe(a, true, undefined, T, 0)
  events.length = 0
  h.recordProbe(a, false, 'status 503', T, 10)
  h.recordProbe(a, false, 'status 503', T, 20)
  t.equal(a.status, 'healthy', 'two failures < unhealthyThreshold 3')
  h.recordProbe(a, true, undefined, T, 30)
  h.recordProbe(a, false, 'x', T, 40)
  h.recordProbe(a, false, 'x', T, 50)
  t.equal(a.status, 'healthy', 'a pass in between restarts the count')
  h.recordProbe(a, false, 'ECONNRESET', T, 60)
  t.equal(a.status, 'unhealthy')
  t.equal(a.isEligible(60), false)
  for (let i = 0; i < 5; i++) h.recordProbe(a, false, 'x', T, 70 + i)
  h.recordProbe(a, true, undefined, T, 100)
  t.equal(a.status, 'unhealthy', 'one pass < healthyThreshold 2')
  h.recordProbe(a, true, undefined, T, 200)
  t.equal(a.status, 'healthy')
  t.equal(a.slowStartFrom, 200)
  t.equal(a.slowStartUntil, 5_200, 'slow start window after unhealthy -> healthy')
  t.equal(a.effectiveWeight(200), 0.1)
  const transitions = events.filter((e) => e.type === 'transition') as TransitionEvent[]
  t.same(transitions.map((e) => [e.from, e.to, e.reason, e.at]), [
    ['healthy', 'unhealthy', 'probe_failed', 60],
    ['unhealthy', 'healthy', 'probe_passed', 200],
  ], 'each transition emitted exactly once')
  t.equal(transitions[0].error, 'ECONNRESET')
  const snap = registry.snapshot('users', 300)!
  t.match(snap[0], { id: 'a', status: 'healthy', reason: 'probe_passed', since: 200, lastError: 'x', consecutiveFailures: 0, consecutiveSuccesses: 2, ejected: false })
})

t.test('a target added after boot ramps up on its first healthy verdict', async (t) => {
  const { pool, registry } = setup(1_000)
  const h = registry.get('users')!
  const c = pool.add({ id: 'c', url: 'http://127.0.0.1:3' })
  h.recordProbe(c, true, undefined, T, 500)
  t.equal(c.status, 'healthy')
  t.equal(c.slowStartUntil, 1_500)
})

t.test('draining sticks through probe verdicts and undrain restores the last verdict', async (t) => {
  const { pool, registry, events } = setup()
  const h = registry.get('users')!
  const a = pool.get('a')!
  h.recordProbe(a, true, undefined, T, 0)
  h.drain(a, 10)
  t.equal(a.status, 'draining')
  t.equal(a.isEligible(10), false)
  for (let i = 0; i < 3; i++) h.recordProbe(a, false, 'x', T, 20 + i)
  t.equal(a.status, 'draining', 'probes do not override draining')
  h.undrain(a, 30)
  t.equal(a.status, 'unhealthy', 'back to what the probes decided meanwhile')
  t.same((events.filter((e) => e.type === 'transition') as TransitionEvent[]).map((e) => e.reason),
    ['probe_passed', 'drain', 'undrain'])
})

t.test('ejection and re-admission are mirrored on the target and emitted', async (t) => {
  const { pool, registry, events } = setup()
  const h = registry.get('users')!
  const a = pool.get('a')!
  h.record(a).ejectionCount = 1
  h.eject(a, 5_000, 'consecutive_failures', 'status 502', 1_000)
  t.equal(a.ejectedUntil, 5_000)
  t.equal(a.isEligible(2_000), false)
  t.match(registry.snapshot('users', 2_000)![0], { ejected: true, ejectedUntil: 5_000, ejectionCount: 1, totalEjections: 1 })
  t.match(registry.summary('users', 2_000), { unknown: 2, ejected: 1, eligible: 1 })
  h.readmit(a, 'trial_passed', 6_000)
  h.readmit(a, 'trial_passed', 6_001)
  t.equal(a.ejectedUntil, 0)
  t.same(events.map((e) => e.type), ['ejected', 'readmitted'], 'a second readmit is a no-op')
})

t.test('a throwing listener does not break the others; unsubscribe works', async (t) => {
  const { pool, registry } = setup()
  const h = registry.get('users')!
  const warnings: Error[] = []
  const onWarning = (w: Error): void => { warnings.push(w) }
  process.on('warning', onWarning)
  t.teardown(() => { process.off('warning', onWarning) })
  registry.onTransition(() => { throw new Error('listener bug') })
  const seen: string[] = []
  const off = registry.onTransition((e) => seen.push(e.to))
  h.recordProbe(pool.get('a')!, true, undefined, T)
  off()
  h.recordProbe(pool.get('b')!, true, undefined, T)
  t.same(seen, ['healthy'])
  t.equal(pool.get('b')!.status, 'healthy')
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(warnings.some((w) => w.message === 'listener bug'), 'reported as a process warning')
})

t.test('the registry keeps one PoolHealth per pool and replaces it for a new pool object', async (t) => {
  const registry = new HealthRegistry()
  const p1 = new UpstreamPool('x', [{ id: 'a', url: 'http://127.0.0.1:1' }])
  const h1 = registry.forPool(p1)
  t.equal(registry.forPool(p1, { slowStart: 10 }), h1)
  t.equal(h1.slowStart, 10)
  const p2 = new UpstreamPool('x', [{ id: 'a', url: 'http://127.0.0.1:1' }])
  t.not(registry.forPool(p2), h1)
  t.same(registry.upstreams, ['x'])
  t.equal(registry.snapshot('nope'), undefined)
})
