// Shared probing on lib/health alone: an ActiveChecker with `shared: true` asks its coordinator before each
// probe, shares its own results, and takes the results another node shared.
import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { HealthRegistry } from '../../lib/health/registry.js'
import { ActiveChecker, type ProbeCoordinator } from '../../lib/health/active.js'
import type { ProbeResult } from '../../lib/health/probe.js'
import type { Target } from '../../lib/upstream/target.js'
import { startHealthUpstream, sleep } from '../helpers/health-upstream.js'
import { until } from '../helpers/poll.js'

function coordinator (probe: boolean): ProbeCoordinator & { shared: Array<{ target: string, ok: boolean }>, joined: number, left: number, probe: boolean } {
  const c = {
    shared: [] as Array<{ target: string, ok: boolean }>,
    joined: 0,
    left: 0,
    probe,
    join (_upstream: string, _interval: number) { c.joined++; return () => { c.left++ } },
    shouldProbe (_upstream: string) { return c.probe },
    share (_upstream: string, target: Target, result: ProbeResult) { c.shared.push({ target: target.id, ok: result.ok }) },
  }
  return c
}

const active = { type: 'http' as const, path: '/health', interval: 50, timeout: 200, healthyThreshold: 1, unhealthyThreshold: 1, jitter: 5 }

t.test('the lease holder probes and shares; a node that does not hold it never probes and takes shared results', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(async () => { await up.close() })
  const pool = new UpstreamPool('users', [{ id: 'a', url: up.url }])
  const registry = new HealthRegistry()
  const holder = coordinator(true)
  const checker = new ActiveChecker(registry.forPool(pool), { ...active, shared: true }, { coordinator: holder })
  checker.start()
  await until(() => holder.shared.length >= 3, 3_000, 'shared results')
  t.ok(holder.shared.every((s) => s.target === 'a' && s.ok), 'its own results are shared')
  t.equal(holder.joined, 1)
  await checker.stop()
  t.equal(holder.left, 1, 'leaves on stop')

  // another node: no probe of its own, the verdict comes from shared results
  const pool2 = new UpstreamPool('users', [{ id: 'a', url: up.url }])
  const other = coordinator(false)
  const checker2 = new ActiveChecker(new HealthRegistry().forPool(pool2), { ...active, shared: true }, { coordinator: other })
  const before = up.hits.get('/health') ?? 0
  checker2.start()
  t.teardown(() => checker2.stop())
  await sleep(300)
  t.equal(up.hits.get('/health') ?? 0, before, 'no probe while another node holds the lease')
  t.equal(other.shared.length, 0)
  const a = pool2.get('a')!
  checker2.applyShared(a, { ok: false, durationMs: 3, error: 'status 503' })
  t.equal(a.status, 'unhealthy', 'a shared failure counts as a probe of its own')
  checker2.applyShared(a, { ok: true, durationMs: 3 })
  t.equal(a.status, 'healthy')
  // the lease moves here: probing resumes on the next tick
  other.probe = true
  await until(() => (up.hits.get('/health') ?? 0) > before, 3_000, 'probes resume')
  t.pass('probes resume once this node may probe')
})

t.test('without shared: true the coordinator is never asked', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(async () => { await up.close() })
  const pool = new UpstreamPool('users', [{ id: 'a', url: up.url }])
  const c = coordinator(false)
  const checker = new ActiveChecker(new HealthRegistry().forPool(pool), active, { coordinator: c })
  checker.start()
  t.teardown(() => checker.stop())
  await until(() => (up.hits.get('/health') ?? 0) >= 2, 3_000, 'probes')
  t.equal(c.joined, 0)
  t.equal(c.shared.length, 0)
  checker.applyShared(pool.get('a')!, { ok: false, durationMs: 1 })
  t.pass('applyShared on an unshared checker is harmless')
})
