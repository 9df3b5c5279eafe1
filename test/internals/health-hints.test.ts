// The rule a node applies to another node's hint (cluster-shared health), on lib/health alone.
import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { createHealth, type HealthEvent, type RemoteHint } from '../../lib/health/index.js'
import { startHealthUpstream } from '../helpers/health-upstream.js'
import { until } from '../helpers/poll.js'

const passive = { consecutiveFailures: 2, baseEjectionTime: 1_000, maxEjectionPercent: 50 }
const hint = (until: number): RemoteHint => ({ kind: 'ejected', from: 'gw-a', until })

function pool3 (): UpstreamPool {
  return new UpstreamPool('users', [{ id: 'a', url: 'http://127.0.0.1:1' }, { id: 'b', url: 'http://127.0.0.1:2' }, { id: 'c', url: 'http://127.0.0.1:3' }])
}

t.test('a hint keeps the target out until it expires, then its one trial decides (passive on)', async (t) => {
  const pool = pool3()
  const h = createHealth(pool, { passive })
  h.start()
  t.teardown(() => h.close())
  const events: HealthEvent[] = []
  h.registry.subscribe((e) => events.push(e))
  const a = pool.get('a')!
  const now = Date.now()
  t.equal(h.applyHint(a, hint(now + 500), now), 'applied')
  t.notOk(a.isEligible(now + 1), 'out while the hint lasts')
  t.match(h.snapshot(now + 1).find((s) => s.id === 'a'), { status: 'healthy', ejected: true, hint: { from: 'gw-a', kind: 'ejected', until: now + 500 } })
  t.match(events, [{ type: 'hinted', from: 'gw-a', kind: 'ejected', until: now + 500 }])
  t.equal(h.applyHint(a, hint(now + 300), now), 'already_out', 'never shortens')
  t.equal(h.applyHint(a, hint(now - 1), now), 'expired')
  t.equal(h.applyHint(a, hint(now + 800), now), 'applied', 'a longer hint extends')
  t.ok(a.isEligible(now + 801), 'eligible again once it expired')
  // the first request after the expiry is the trial; its success re-admits
  h.onRequestStart(a, now + 801)
  t.notOk(a.isEligible(now + 802), 'one trial at a time')
  h.onResult(a, { ok: true, status: 200 }, now + 810)
  t.equal(a.ejectedUntil, 0)
  t.match(h.snapshot(now + 811).find((s) => s.id === 'a'), { ejected: false, hint: null })
  t.match(events.at(-1), { type: 'readmitted', reason: 'trial_passed' })
})

t.test('a failed trial after a hint is this node\'s own ejection', async (t) => {
  const pool = pool3()
  const h = createHealth(pool, { passive })
  h.start()
  t.teardown(() => h.close())
  const a = pool.get('a')!
  const now = Date.now()
  h.applyHint(a, hint(now + 100), now)
  h.onRequestStart(a, now + 101)
  h.onResult(a, { ok: false, status: 503 }, now + 102)
  t.equal(a.ejectedUntil, now + 102 + 1_000, 'ejected by its own evidence, base ejection time')
})

t.test('a hint obeys this node\'s ejection limits: never the last eligible target, never past maxEjectionPercent', async (t) => {
  const pool = pool3()
  const h = createHealth(pool, { passive })
  h.start()
  t.teardown(() => h.close())
  const now = Date.now()
  t.equal(h.applyHint(pool.get('a')!, hint(now + 1_000), now), 'applied')
  t.equal(h.applyHint(pool.get('b')!, hint(now + 1_000), now), 'ejection_limit', '2 of 3 out would pass 50 %')
  t.ok(pool.get('b')!.isEligible(now))

  const two = new UpstreamPool('two', [{ id: 'x', url: 'http://127.0.0.1:1' }, { id: 'y', url: 'http://127.0.0.1:2' }])
  const h2 = createHealth(two) // no passive detection: only the last-eligible rule
  h2.start()
  t.teardown(() => h2.close())
  t.equal(h2.applyHint(two.get('x')!, hint(now + 1_000), now), 'applied')
  t.equal(h2.applyHint(two.get('y')!, hint(now + 1_000), now), 'last_eligible')
  t.ok(two.get('x')!.isEligible(now + 1_000), 'without passive detection the target is simply back when the hint ends')
  t.match(h2.snapshot(now + 1).find((s) => s.id === 'x'), { ejected: false, hint: { from: 'gw-a' } })
})

t.test('a target already out here takes a hint whatever the limits', async (t) => {
  const two = new UpstreamPool('two', [{ id: 'x', url: 'http://127.0.0.1:1' }, { id: 'y', url: 'http://127.0.0.1:2' }])
  const h = createHealth(two, { passive })
  h.start()
  t.teardown(() => h.close())
  const now = Date.now()
  h.state.drain(two.get('y')!, now)
  t.equal(h.applyHint(two.get('y')!, hint(now + 1_000), now), 'applied', 'draining: out anyway')
})

t.test('a passing probe that started after the hint re-admits the target; the hint never touches its status', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(async () => { await up.close() })
  const pool = new UpstreamPool('p', [{ id: 'a', url: up.url }, { id: 'b', url: up.url }])
  const h = createHealth(pool, { passive, active: { type: 'http', path: '/', interval: 100, timeout: 500, healthyThreshold: 1, unhealthyThreshold: 1, jitter: 0 } })
  h.start()
  t.teardown(() => h.close())
  await until(() => pool.targets.every((x) => x.status === 'healthy'), 3_000, 'healthy')
  const a = pool.get('a')!
  const at = Date.now()
  t.equal(h.applyHint(a, hint(at + 60_000), at), 'applied')
  t.equal(a.status, 'healthy', 'status untouched')
  const ms = await until(() => a.ejectedUntil === 0, 3_000, 're-admitted by a probe')
  t.ok(ms < 3_000, `re-admitted by its own probe after ${ms} ms, long before the hint's 60 s`)
  t.equal(h.snapshot().find((s) => s.id === 'a')!.hint, null)
})
