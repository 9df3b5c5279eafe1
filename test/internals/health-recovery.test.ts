import t from 'tap'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { HealthRegistry } from '../../lib/health/registry.js'
import { AutoRecovery, type RecoveryContext, type RecoveryOptions } from '../../lib/health/recovery.js'
import { ActiveChecker } from '../../lib/health/active.js'
import type { HealthEvent, RecoveryResultEvent } from '../../lib/health/events.js'
import type { PoolHealth } from '../../lib/health/state.js'
import { startHealthUpstream, sleep, type HealthUpstream } from '../helpers/health-upstream.js'
import { until } from '../helpers/poll.js'

/** What the rigs need from a (sub)test. */
interface Test { teardown: (fn: () => unknown) => void }

function rig (t: Test, options: RecoveryOptions, targets = 2): {
  pool: UpstreamPool, state: PoolHealth, recovery: AutoRecovery, events: HealthEvent[]
} {
  const pool = new UpstreamPool('users', Array.from({ length: targets }, (_, i) => ({ id: `t${i}`, url: `http://127.0.0.1:${20_000 + i}` })))
  const registry = new HealthRegistry()
  const state = registry.forPool(pool)
  const events: HealthEvent[] = []
  registry.subscribe((e) => { if (e.type.startsWith('recovery')) events.push(e) })
  const recovery = new AutoRecovery(state, options)
  recovery.start()
  t.teardown(() => recovery.stop())
  return { pool, state, recovery, events }
}

async function webhookServer (t: Test): Promise<HealthUpstream> {
  const hook = await startHealthUpstream()
  t.teardown(() => hook.close())
  return hook
}

t.test('a real target killed for good: the webhook is called once per cooldown with the target in the body', async (t) => {
  const hook = await webhookServer(t)
  const times: number[] = []
  hook.traffic = 200
  const target = await startHealthUpstream()
  t.teardown(() => target.close())
  const pool = new UpstreamPool('users', [{ id: 'users-1', url: target.url }, { id: 'users-2', url: hook.url }])
  const registry = new HealthRegistry()
  const state = registry.forPool(pool)
  const checker = new ActiveChecker(state, { type: 'http', interval: 50, timeout: 200, healthyThreshold: 1, unhealthyThreshold: 1, jitter: 10 })
  const after = 150
  const cooldown = 400
  const recovery = new AutoRecovery(state, { after, cooldown, webhook: { url: hook.url + '/restart', timeout: 500 } })
  const results: RecoveryResultEvent[] = []
  registry.events.on('recovery_attempt', (e) => times.push(e.at))
  registry.events.on('recovery_result', (e) => results.push(e))
  checker.start(); recovery.start()
  t.teardown(async () => { await checker.stop(); await recovery.stop() })
  await until(() => pool.get('users-1')!.status === 'healthy', 3_000, 'healthy')
  await sleep(300)
  t.equal(hook.hits.get('/restart') ?? 0, 0, 'no call while healthy')

  await target.kill()
  await until(() => pool.get('users-1')!.status === 'unhealthy', 3_000, 'unhealthy')
  const downAt = state.record(pool.get('users-1')!).since
  await sleep(1_500)
  const calls = hook.hits.get('/restart') ?? 0
  // 1.5 s down: first call at +150 ms, then every 400 ms -> 4 calls (3..4 allowed on a slow machine)
  t.ok(calls >= 3 && calls <= 4, `${calls} webhook calls in 1.5 s (after 150 ms, cooldown 400 ms)`)
  t.ok(times[0] - downAt >= after - 5, 'first call after `after`')
  for (let i = 1; i < times.length; i++) t.ok(times[i] - times[i - 1] >= cooldown - 5, `attempt ${i + 1} ${times[i] - times[i - 1]} ms after the previous`)
  t.match(hook.bodies[0], { upstream: 'users', target: 'users-1', url: target.url, since: downAt, reason: 'probe_failed' })
  t.ok(results.length >= 3 && results.every((r) => r.ok), 'every outcome reported')

  await target.restart()
  await until(() => pool.get('users-1')!.status === 'healthy', 3_000, 'healthy again')
  const callsAtRecovery = hook.hits.get('/restart') ?? 0
  await sleep(cooldown + 200)
  t.equal(hook.hits.get('/restart') ?? 0, callsAtRecovery, 'no call once the target is back')
})

t.test('a target that recovers before `after` triggers nothing', async (t) => {
  const calls: RecoveryContext[] = []
  const { pool, state } = rig(t, { after: 200, cooldown: 1_000, action: (ctx) => { calls.push(ctx) } })
  state.setVerdict(pool.get('t0')!, 'unhealthy', 'probe_failed')
  await sleep(100)
  state.setVerdict(pool.get('t0')!, 'healthy', 'probe_passed')
  await sleep(250)
  t.equal(calls.length, 0)
})

t.test('a hanging webhook times out, is reported, does not block probes or the next attempt', async (t) => {
  const hook = await webhookServer(t)
  hook.traffic = 'hang'
  const { pool, state, events, recovery } = rig(t, { after: 0, cooldown: 250, webhook: { url: hook.url + '/restart', timeout: 100 } })
  const a = pool.get('t0')!
  state.setVerdict(a, 'unhealthy', 'probe_failed')
  await until(() => events.filter((e) => e.type === 'recovery_result').length >= 2, 3_000, 'two outcomes')
  const results = events.filter((e): e is RecoveryResultEvent => e.type === 'recovery_result')
  t.match(results[0], { ok: false, error: 'webhook: timeout after 100ms', attempt: 1 })
  t.ok(results[0].durationMs < 1_000)
  // The state machine is not held up meanwhile.
  state.setVerdict(pool.get('t1')!, 'healthy', 'probe_passed')
  t.equal(pool.get('t1')!.status, 'healthy')
  t.ok(recovery.attempts(a) >= 2)
})

t.test('a throwing or rejecting action is reported as a failed attempt and never throws', async (t) => {
  let n = 0
  const { pool, state, events } = rig(t, {
    after: 0,
    cooldown: 100,
    action: () => {
      n++
      if (n === 1) throw new Error('orchestrator down')
      return Promise.reject(new Error('still down'))
    },
  })
  state.setVerdict(pool.get('t0')!, 'unhealthy', 'probe_failed', 'ECONNREFUSED')
  await until(() => events.filter((e) => e.type === 'recovery_result').length >= 2, 3_000, 'two outcomes')
  const results = events.filter((e): e is RecoveryResultEvent => e.type === 'recovery_result')
  t.match(results.map((r) => r.error), ['action: orchestrator down', 'action: still down'])
  t.match(events.filter((e) => e.type === 'recovery_attempt').map((e) => (e as { attempt: number }).attempt).slice(0, 2), [1, 2])
})

t.test('the action gets the context; a hanging action stops being waited for', async (t) => {
  const seen: RecoveryContext[] = []
  const { pool, state, events } = rig(t, {
    after: 0,
    cooldown: 10_000,
    timeout: 80,
    action: (ctx, signal) => { seen.push(ctx); return new Promise((resolve) => signal.addEventListener('abort', resolve)) },
  })
  state.setVerdict(pool.get('t1')!, 'unhealthy', 'probe_failed', 'status 503')
  await until(() => events.some((e) => e.type === 'recovery_result'), 3_000, 'outcome')
  t.match(seen, [{ upstream: 'users', target: 't1', reason: 'probe_failed', lastError: 'status 503' }])
  t.match(events.find((e) => e.type === 'recovery_result'), { ok: false, error: 'action: timeout after 80ms' })
})

t.test('stop() cancels pending attempts; options are validated', async (t) => {
  const calls: unknown[] = []
  const { pool, state, recovery } = rig(t, { after: 100, cooldown: 100, action: (c) => { calls.push(c) } })
  state.setVerdict(pool.get('t0')!, 'unhealthy', 'probe_failed')
  await recovery.stop()
  await sleep(200)
  t.equal(calls.length, 0)
  t.throws(() => new AutoRecovery(state, { after: 1, cooldown: 1 }), { code: 'FHG_ERR_INVALID_CONFIG' })
  t.throws(() => new AutoRecovery(state, { after: 1, cooldown: 0, action: () => {} }), { code: 'FHG_ERR_INVALID_CONFIG' })
})
