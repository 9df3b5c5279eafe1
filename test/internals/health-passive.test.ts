import t from 'tap'
import { request, Agent } from 'undici'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import type { Target } from '../../lib/upstream/target.js'
import { HealthRegistry } from '../../lib/health/registry.js'
import { PassiveDetector, type PassiveOptions } from '../../lib/health/passive.js'
import type { EjectionEvent, HealthEvent } from '../../lib/health/events.js'
import type { PoolHealth } from '../../lib/health/state.js'
import { startHealthUpstream } from '../helpers/health-upstream.js'

/** What the rigs need from a (sub)test. */
interface Test { teardown: (fn: () => unknown) => void }
const FAIL = { ok: false, status: 503 }
const OK = { ok: true, status: 200 }

function rig (t: Test, n: number, options: Partial<PassiveOptions> = {}): {
  pool: UpstreamPool, state: PoolHealth, passive: PassiveDetector, events: HealthEvent[], ids: string[]
} {
  const ids = Array.from({ length: n }, (_, i) => `t${i}`)
  const pool = new UpstreamPool('users', ids.map((id, i) => ({ id, url: `http://127.0.0.1:${10_000 + i}` })))
  const registry = new HealthRegistry()
  const state = registry.forPool(pool)
  for (const x of pool.targets) state.setVerdict(x, 'healthy', 'no_active_check')
  const passive = new PassiveDetector(state, {
    consecutiveFailures: 3, baseEjectionTime: 1_000, maxEjectionTime: 3_500, maxEjectionPercent: 50, ...options,
  })
  passive.start()
  t.teardown(() => passive.close())
  const events: HealthEvent[] = []
  registry.subscribe((e) => { if (e.type !== 'transition') events.push(e) })
  return { pool, state, passive, events, ids }
}

function fail (p: PassiveDetector, x: Target, times: number, now: number): void {
  for (let i = 0; i < times; i++) p.onResult(x, FAIL, now)
}

t.test('ejects after consecutiveFailures in a row; a success or a non-failure status resets the streak', async (t) => {
  const { pool, passive, events, state } = rig(t, 4)
  const a = pool.get('t0')!
  fail(passive, a, 2, 0)
  passive.onResult(a, OK, 0)
  fail(passive, a, 2, 0)
  passive.onResult(a, { ok: false, status: 500 }, 0) // 500 is not a failure status by default
  passive.onResult(a, { ok: true, status: 404 }, 0)
  t.equal(a.ejectedUntil, 0, 'no ejection yet')
  t.equal(state.record(a).passiveFailures, 0)
  passive.onResult(a, { ok: false, error: 'ECONNRESET' }, 10)
  passive.onResult(a, { ok: false }, 10)
  passive.onResult(a, { ok: false, status: 504 }, 10)
  t.equal(a.ejectedUntil, 1_010, 'ejected for baseEjectionTime x 1')
  t.notOk(a.isEligible(500))
  t.match(events, [{ type: 'ejected', reason: 'consecutive_failures', ejectionCount: 1, until: 1_010, error: 'status 504' }])
  t.equal(state.record(a).lastError, 'status 504')
})

t.test('custom failureStatuses', async (t) => {
  const { pool, passive } = rig(t, 2, { failureStatuses: [500], consecutiveFailures: 1 })
  passive.onResult(pool.get('t0')!, { ok: false, status: 503 }, 0)
  t.equal(pool.get('t0')!.ejectedUntil, 0)
  passive.onResult(pool.get('t0')!, { ok: false, status: 500 }, 0)
  t.ok(pool.get('t0')!.ejectedUntil > 0)
})

t.test('one trial request after the ejection: others skip the target while it is in flight', async (t) => {
  const { pool, passive, events, state } = rig(t, 3)
  const a = pool.get('t0')!
  fail(passive, a, 3, 0)
  passive.onResult(a, FAIL, 500) // an answer to a request sent before the ejection: ignored
  t.equal(a.ejectedUntil, 1_000)
  t.ok(a.isEligible(1_000), 'eligible again once the ejection time is over')
  passive.onRequestStart(a, 1_000) // the pick that becomes the trial
  t.notOk(a.isEligible(1_001), 'not eligible for other requests while the trial is in flight')
  passive.onRequestStart(a, 1_001) // would be a bug in the caller; must not start a second trial
  t.equal(events.filter((e) => e.type === 'trial').length, 1)
  t.match(state.snapshot(1_001)[0], { ejected: true, trialInFlight: true })
  passive.onResult(a, OK, 1_050)
  t.equal(a.ejectedUntil, 0)
  t.ok(a.isEligible(1_050))
  t.match(events.at(-1), { type: 'readmitted', reason: 'trial_passed' })
  t.equal(state.record(a).passiveFailures, 0)
})

t.test('ejection time grows with each failed trial, capped at maxEjectionTime', async (t) => {
  const { pool, passive, events } = rig(t, 3)
  const a = pool.get('t0')!
  fail(passive, a, 3, 0)
  let now = 0
  const durations: number[] = []
  for (let i = 0; i < 5; i++) {
    const until = a.ejectedUntil
    durations.push(until - now)
    now = until
    passive.onRequestStart(a, now)
    passive.onResult(a, { ok: false, error: 'ECONNREFUSED' }, now)
  }
  t.same(durations, [1_000, 2_000, 3_000, 3_500, 3_500], 'base x n, capped at 3.5 s')
  t.same(events.filter((e): e is EjectionEvent => e.type === 'ejected').map((e) => [e.reason, e.ejectionCount]),
    [['consecutive_failures', 1], ['trial_failed', 2], ['trial_failed', 3], ['trial_failed', 4], ['trial_failed', 5], ['trial_failed', 6]])
})

t.test('without onRequestStart the first result after expiry decides; a lost trial frees up after trialTimeout', async (t) => {
  const { pool, passive, events } = rig(t, 3, { trialTimeout: 200 })
  const a = pool.get('t0')!
  fail(passive, a, 3, 0)
  passive.onResult(a, OK, 1_000)
  t.equal(a.ejectedUntil, 0, 'readmitted by the first answer after expiry')
  fail(passive, a, 3, 2_000)
  const until = a.ejectedUntil
  passive.onRequestStart(a, until) // trial starts, its answer never comes
  t.notOk(a.isEligible(until + 100))
  t.ok(a.isEligible(until + 200), 'eligible again after trialTimeout')
  passive.onRequestStart(a, until + 200)
  t.equal(events.filter((e) => e.type === 'trial').length, 2, 'a second trial')
})

t.test('the multiplier restarts after the target behaved for maxEjectionTime', async (t) => {
  const { pool, passive, state } = rig(t, 3)
  const a = pool.get('t0')!
  fail(passive, a, 3, 0)
  passive.onRequestStart(a, 1_000); passive.onResult(a, OK, 1_000)
  fail(passive, a, 3, 2_000)
  t.equal(state.record(a).ejectionCount, 2, 'ejected again soon after: n grows')
  t.equal(a.ejectedUntil, 4_000)
  passive.onRequestStart(a, 4_000); passive.onResult(a, OK, 4_000)
  fail(passive, a, 3, 4_000 + 3_500)
  t.equal(state.record(a).ejectionCount, 1, 'after 3.5 s of good behaviour n starts over')
  t.equal(state.record(a).totalEjections, 3)
})

t.test('maxEjectionPercent bounds the share of the pool out of rotation, unhealthy targets included', async (t) => {
  t.test('50 % of 4: two ejected at most', async (t) => {
    const { pool, passive } = rig(t, 4, { maxEjectionPercent: 50 })
    for (const x of pool.targets) fail(passive, x, 3, 0)
    t.equal(pool.targets.filter((x) => x.ejectedUntil > 0).length, 2)
    t.equal(pool.targets.filter((x) => x.isEligible(1)).length, 2)
  })
  t.test('25 % of 4 with one target unhealthy: nothing may be ejected', async (t) => {
    const { pool, passive, state } = rig(t, 4, { maxEjectionPercent: 25 })
    state.setVerdict(pool.get('t3')!, 'unhealthy', 'probe_failed')
    for (const x of pool.targets.slice(0, 3)) fail(passive, x, 5, 0)
    t.equal(pool.targets.filter((x) => x.ejectedUntil > 0).length, 0)
  })
  t.test('the last eligible target is never ejected, even at 100 %', async (t) => {
    const { pool, passive } = rig(t, 3, { maxEjectionPercent: 100 })
    for (const x of pool.targets) fail(passive, x, 10, 0)
    t.equal(pool.targets.filter((x) => x.isEligible(1)).length, 1)
    const single = rig(t, 1, { maxEjectionPercent: 100 })
    fail(single.passive, single.pool.get('t0')!, 10, 0)
    t.equal(single.pool.get('t0')!.ejectedUntil, 0, 'a pool of one never ejects')
  })
  t.test('a failed trial is re-admitted when the others have gone meanwhile', async (t) => {
    const { pool, passive, state, events } = rig(t, 2, { maxEjectionPercent: 100 })
    const [a, b] = pool.targets
    fail(passive, a, 3, 0)
    passive.onRequestStart(a, 1_000)
    state.setVerdict(b, 'unhealthy', 'probe_failed', undefined, 1_000)
    passive.onResult(a, FAIL, 1_010)
    t.equal(a.ejectedUntil, 0)
    t.match(events.at(-1), { type: 'readmitted', reason: 'last_eligible' })
  })
})

t.test('an ejected target is re-admitted when a change leaves no other eligible target', async (t) => {
  const { pool, passive, state, events } = rig(t, 2, { maxEjectionPercent: 100, baseEjectionTime: 60_000 })
  const [a, b] = pool.targets
  fail(passive, a, 3, Date.now())
  t.notOk(a.isEligible(Date.now()))
  state.setVerdict(b, 'unhealthy', 'probe_failed')
  t.ok(a.isEligible(Date.now()), 'better a suspect target than none')
  t.match(events.at(-1), { type: 'readmitted', target: a, reason: 'last_eligible' })
})

t.test('live traffic: the bad target receives a bounded number of requests', async (t) => {
  const good = await startHealthUpstream()
  const bad = await startHealthUpstream()
  bad.traffic = 503
  const agent = new Agent()
  t.teardown(async () => { await good.close(); await bad.close(); await agent.close() })
  const pool = new UpstreamPool('live', [{ id: 'good', url: good.url }, { id: 'bad', url: bad.url }])
  const registry = new HealthRegistry()
  const state = registry.forPool(pool)
  for (const x of pool.targets) state.setVerdict(x, 'healthy', 'no_active_check')
  const passive = new PassiveDetector(state, { consecutiveFailures: 3, baseEjectionTime: 200, maxEjectionTime: 400, maxEjectionPercent: 50 })
  passive.start()
  t.teardown(() => passive.close())
  let cursor = 0
  let failed = 0
  const deadline = Date.now() + 1_500
  let sent = 0
  while (Date.now() < deadline) {
    const now = Date.now()
    // round robin over eligible targets, as a balancer would
    let target: Target | undefined
    for (let i = 0; i < pool.size && target === undefined; i++) {
      const c = pool.targets[(cursor + i) % pool.size]
      if (c.isEligible(now)) target = c
    }
    cursor++
    if (target === undefined) continue
    passive.onRequestStart(target, now)
    const res = await request(target.origin + '/users', { dispatcher: agent })
    await res.body.dump()
    if (res.statusCode >= 500) failed++
    passive.onResult(target, { ok: res.statusCode < 500, status: res.statusCode })
    sent++
  }
  const badHits = bad.hits.get('/users') ?? 0
  // 3 to eject, then one trial per ejection (200, 400, 400, ... ms): about 3 + 1.5 s / 0.4 s
  t.ok(sent > 50, `${sent} requests sent`)
  t.ok(badHits <= 3 + 8, `bad target got ${badHits} of ${sent} requests`)
  t.equal(failed, badHits)
})
