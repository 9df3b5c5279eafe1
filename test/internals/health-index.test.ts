import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { createHealth, HealthRegistry, type HealthCheckOptions, type HealthEvent, type ProbeSample } from '../../lib/health/index.js'
import type { HealthCheckConfig } from '../../lib/config/index.js'
import { startHealthUpstream, sleep } from '../helpers/health-upstream.js'
import { until } from '../helpers/poll.js'

// Contract with lib/config: the normalized `healthCheck` of an upstream is a valid createHealth() input.
export const configFits = (c: HealthCheckConfig): HealthCheckOptions => c

t.test('range-normalized failureStatuses (as lib/config produces) work', async (t) => {
  const pool = new UpstreamPool('r', [{ id: 'a', url: 'http://127.0.0.1:1' }, { id: 'b', url: 'http://127.0.0.1:2' }])
  const h = createHealth(pool, { passive: { consecutiveFailures: 1, baseEjectionTime: 1_000, maxEjectionPercent: 50, failureStatuses: [[500, 504]] } })
  h.start()
  t.teardown(() => h.close())
  h.onResult(pool.get('a')!, { ok: false, status: 501 })
  t.ok(pool.get('a')!.ejectedUntil > 0)
  t.throws(() => createHealth(pool, { passive: { consecutiveFailures: 1, baseEjectionTime: 1, maxEjectionPercent: 50, failureStatuses: [[504, 500]] } }),
    { code: 'FHG_ERR_INVALID_CONFIG' })
})

t.test('without active probes targets are taken as healthy; passive ejection still works', async (t) => {
  const pool = new UpstreamPool('users', [{ id: 'a', url: 'http://127.0.0.1:1' }, { id: 'b', url: 'http://127.0.0.1:2' }])
  const h = createHealth(pool, { passive: { consecutiveFailures: 2, baseEjectionTime: 1_000, maxEjectionPercent: 50 }, slowStart: 500 })
  t.teardown(() => h.close())
  h.start()
  t.same(pool.targets.map((x) => x.status), ['healthy', 'healthy'])
  t.equal(pool.get('a')!.slowStartUntil, 0, 'no ramp for targets present at start')
  const c = pool.add({ id: 'c', url: 'http://127.0.0.1:3' })
  t.equal(c.status, 'healthy')
  t.ok(c.slowStartUntil > Date.now(), 'a target added later ramps up')
  const now = Date.now()
  h.onResult(pool.get('a')!, { ok: false, error: 'ECONNREFUSED' }, now)
  h.onResult(pool.get('a')!, { ok: false, error: 'ECONNREFUSED' }, now)
  t.notOk(pool.get('a')!.isEligible(now + 1))
  h.onRequestStart(pool.get('a')!, now + 1_000)
  t.match(h.snapshot(now + 1_001).find((s) => s.id === 'a'), { ejected: true, trialInFlight: true, ejectionCount: 1, lastError: 'ECONNREFUSED' })
})

t.test('active + passive + recovery on one pool, a shared registry across pools, close() stops everything', async (t) => {
  const a = await startHealthUpstream()
  const b = await startHealthUpstream()
  const hook = await startHealthUpstream()
  t.teardown(async () => { await a.close(); await b.close(); await hook.close() })
  const registry = new HealthRegistry()
  const events: HealthEvent[] = []
  registry.subscribe((e) => events.push(e))
  const samples: ProbeSample[] = []
  const users = new UpstreamPool('users', [{ id: 'a', url: a.url }, { id: 'b', url: b.url }])
  const other = new UpstreamPool('other', [{ id: 'x', url: b.url }])
  const options = {
    active: { type: 'http' as const, interval: 50, timeout: 200, healthyThreshold: 1, unhealthyThreshold: 1, jitter: 5 },
    passive: { consecutiveFailures: 3, baseEjectionTime: 10_000, maxEjectionPercent: 50 },
    recovery: { after: 50, cooldown: 10_000, webhook: { url: hook.url + '/restart', timeout: 200 } },
  }
  const h1 = createHealth(users, options, { registry, onProbe: (s) => samples.push(s) })
  const h2 = createHealth(other, { active: options.active }, { registry })
  h1.start(); h2.start()
  t.teardown(async () => { await h1.close(); await h2.close() })
  await until(() => [...users.targets, ...other.targets].every((x) => x.status === 'healthy'), 3_000, 'all healthy')
  t.same(registry.upstreams.sort(), ['other', 'users'])
  t.match(registry.summary('users'), { healthy: 2, eligible: 2 })
  t.ok(samples.length >= 2 && samples.every((s) => s.upstream === 'users' && s.type === 'http' && s.result.durationMs >= 0), 'probe hook')

  await a.kill()
  await until(() => (hook.hits.get('/restart') ?? 0) === 1, 3_000, 'recovery webhook')
  t.match(registry.snapshot('users')!.find((s) => s.id === 'a'), { status: 'unhealthy', reason: 'probe_failed' })
  t.match(events.map((e) => e.type), ['transition', 'transition', 'transition', 'transition', 'recovery_attempt'])

  await h1.close(); await h2.close()
  const probes = samples.length
  const hits = b.hits.get('/health')
  await sleep(200)
  t.equal(samples.length, probes, 'no probe after close')
  t.equal(b.hits.get('/health'), hits)
})
