import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import { HealthRegistry } from '../../lib/health/registry.js'
import { ActiveChecker, type ActiveOptions, type ProbeSample } from '../../lib/health/active.js'
import type { HealthEvent, TransitionEvent } from '../../lib/health/events.js'
import type { PoolHealth } from '../../lib/health/state.js'
import { startHealthChildUpstream, startHealthUpstream, sleep } from '../helpers/health-upstream.js'
import { until } from '../helpers/poll.js'

/** What the rigs need from a (sub)test. */
interface Test { teardown: (fn: () => unknown) => void }

interface Rig {
  pool: UpstreamPool
  state: PoolHealth
  checker: ActiveChecker
  events: HealthEvent[]
  samples: ProbeSample[]
  transitions: (id?: string) => TransitionEvent[]
}

function rig (t: Test, pool: UpstreamPool, active: Partial<ActiveOptions>, slowStart = 0): Rig {
  const registry = new HealthRegistry()
  const state = registry.forPool(pool, { slowStart })
  const samples: ProbeSample[] = []
  const checker = new ActiveChecker(state, {
    type: 'http', interval: 100, timeout: 300, healthyThreshold: 2, unhealthyThreshold: 2, jitter: 20, ...active,
  }, { onProbe: (s) => samples.push(s) })
  const events: HealthEvent[] = []
  registry.subscribe((e) => events.push(e))
  checker.start()
  t.teardown(() => checker.stop())
  const transitions = (id?: string): TransitionEvent[] =>
    events.filter((e): e is TransitionEvent => e.type === 'transition' && (id === undefined || e.target.id === id))
  return { pool, state, checker, events, samples, transitions }
}

t.test('a SIGKILLed upstream process turns unhealthy within unhealthyThreshold x interval + timeout and gets no traffic', async (t) => {
  const victim = await startHealthChildUpstream()
  const other = await startHealthUpstream()
  t.teardown(async () => { await victim.kill(); await other.close() })
  const pool = new UpstreamPool('users', [{ id: 'victim', url: victim.url }, { id: 'other', url: other.url }])
  const interval = 100; const timeout = 300; const unhealthyThreshold = 3; const jitter = 20
  const r = rig(t, pool, { interval, timeout, unhealthyThreshold, jitter })
  await until(() => pool.targets.every((x) => x.status === 'healthy'), 3_000, 'both healthy')

  await victim.kill()
  const tookMs = await until(() => pool.get('victim')!.status === 'unhealthy', 10_000, 'victim unhealthy')
  // Detection bound: threshold probes, each up to interval + jitter apart, the last one up to timeout; + 1 s for a busy machine.
  const bound = unhealthyThreshold * (interval + jitter) + timeout + 1_000
  t.ok(tookMs <= bound, `unhealthy after ${tookMs} ms (bound ${bound} ms)`)
  const now = Date.now()
  t.same(pool.targets.filter((x) => x.isEligible(now)).map((x) => x.id), ['other'], 'only the live target is eligible')
  t.match(r.state.record(pool.get('victim')!), { reason: 'probe_failed', consecutiveFailures: unhealthyThreshold })
  t.match(r.state.record(pool.get('victim')!).lastError, /ECONNREFUSED|ECONNRESET|other side closed|SocketError/)
  t.equal(r.transitions('victim').length, 2, 'unknown -> healthy -> unhealthy, nothing repeated')
  await sleep(4 * interval)
  t.equal(r.transitions('victim').length, 2, 'further failed probes emit nothing')
  t.equal(pool.get('other')!.status, 'healthy')
})

t.test('a target that serves traffic but answers 503 on its probe path turns unhealthy', async (t) => {
  const sick = await startHealthUpstream()
  t.teardown(() => sick.close())
  sick.probe = 503
  const pool = new UpstreamPool('users', [{ id: 'sick', url: sick.url }])
  const r = rig(t, pool, {})
  await until(() => pool.get('sick')!.status === 'unhealthy', 3_000, 'sick unhealthy')
  t.equal(r.state.record(pool.get('sick')!).lastError, 'status 503')
  const res = await fetch(sick.url + '/users')
  t.equal(res.status, 200, 'it still serves traffic')
  await res.arrayBuffer()
})

t.test('a restarted target turns healthy after healthyThreshold probes and ramps up with slowStart', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(() => up.close())
  const pool = new UpstreamPool('users', [{ id: 'a', url: up.url }, { id: 'b', url: up.url }])
  const slowStart = 2_000
  const r = rig(t, pool, { interval: 80, healthyThreshold: 3, unhealthyThreshold: 2 }, slowStart)
  const a = pool.get('a')!
  await until(() => a.status === 'healthy', 3_000, 'healthy at boot')
  t.equal(a.slowStartUntil, 0, 'no slow start for the first verdict at boot')
  await up.kill()
  await until(() => a.status === 'unhealthy', 3_000, 'unhealthy')
  const failuresBefore = r.samples.length

  await up.restart()
  const restartedAt = Date.now()
  await until(() => a.status === 'healthy', 5_000, 'healthy again')
  const passes = r.samples.slice(failuresBefore).filter((s) => s.target === a && s.result.ok).length
  t.ok(passes >= 3, `healthy after ${passes} passing probes (healthyThreshold 3)`)
  const up2 = r.transitions('a').at(-1)!
  t.match(up2, { from: 'unhealthy', to: 'healthy', reason: 'probe_passed' })
  t.ok(up2.at >= restartedAt)
  t.equal(a.slowStartFrom, up2.at)
  t.equal(a.slowStartUntil, up2.at + slowStart, 'slow-start window of slowStart ms')
  const w = a.effectiveWeight(Date.now())
  t.ok(w >= 0.1 && w < 1, `ramping weight ${w}`)
  t.equal(a.effectiveWeight(up2.at + slowStart), 1, 'full weight at the end of the window')
  t.ok(a.isEligible(Date.now()), 'gets traffic again')
})

t.test('a flapping target does not thrash with thresholds 2/2 (and does with 1/1)', async (t) => {
  for (const [threshold, expectFew] of [[2, true], [1, false]] as const) {
    const up = await startHealthUpstream()
    let n = 0
    up.probe = () => (n++ % 2 === 0 ? 200 : 503)
    const pool = new UpstreamPool('flap', [{ id: 'f', url: up.url }])
    const sub = t.test(`thresholds ${threshold}/${threshold}`, async (t) => {
      const r = rig(t, pool, { interval: 30, jitter: 5, healthyThreshold: threshold, unhealthyThreshold: threshold })
      await until(() => r.samples.length >= 16, 10_000, '16 probes')
      await r.checker.stop()
      const count = r.transitions('f').length
      if (expectFew) t.equal(count, 1, 'only the first verdict: alternating answers never reach 2 in a row')
      else t.ok(count >= 12, `${count} transitions without hysteresis`)
    })
    await sub
    await up.close()
  }
})

t.test('unknown targets are routable until the first verdict unless requireHealthyOnStart', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(() => up.close())
  up.probe = 'hang'
  const open = new UpstreamPool('open', [{ id: 'a', url: up.url }])
  const strict = new UpstreamPool('strict', [{ id: 'a', url: up.url }])
  rig(t, open, { interval: 1_000, timeout: 400 })
  const r = rig(t, strict, { interval: 1_000, timeout: 400, requireHealthyOnStart: true })
  const now = Date.now()
  t.equal(open.get('a')!.status, 'unknown')
  t.ok(open.get('a')!.isEligible(now), 'unknown and routable')
  t.notOk(strict.get('a')!.isEligible(now), 'unknown and not routable')
  await until(() => strict.get('a')!.status === 'unhealthy', 3_000, 'first verdict (timeout)')
  t.match(r.state.record(strict.get('a')!).lastError, 'timeout after 400ms')
  up.probe = 200
  await until(() => strict.get('a')!.status === 'healthy', 5_000, 'healthy')
  t.ok(strict.get('a')!.isEligible(Date.now()))
})

t.test('probes run faster while unhealthy (unhealthyInterval)', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(() => up.close())
  up.probe = 503
  const pool = new UpstreamPool('u', [{ id: 'a', url: up.url }])
  const r = rig(t, pool, { interval: 2_000, unhealthyInterval: 50, jitter: 0, unhealthyThreshold: 1 })
  await until(() => pool.get('a')!.status === 'unhealthy', 3_000, 'unhealthy')
  const before = r.samples.length
  await sleep(800)
  const n = r.samples.length - before
  t.ok(n >= 4, `${n} probes in 800 ms while unhealthy (interval alone would give 0)`)
})

t.test('follows pool membership; many targets may share one URL; concurrency is bounded', async (t) => {
  let inFlight = 0
  let maxInFlight = 0
  const server = http.createServer((req, res) => {
    inFlight++
    maxInFlight = Math.max(maxInFlight, inFlight)
    setTimeout(() => { inFlight--; res.end('ok') }, 15)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const specs = Array.from({ length: 30 }, (_, i) => ({ id: `t${i}`, url }))
  const pool = new UpstreamPool('shared', specs)
  const r = rig(t, pool, { interval: 200, concurrency: 3 })
  await until(() => pool.targets.every((x) => x.status === 'healthy'), 10_000, 'all 30 healthy')
  t.ok(maxInFlight <= 3, `at most 3 probes at once (saw ${maxInFlight})`)
  t.ok(r.checker.inFlight <= 3)

  const added = pool.add({ id: 'late', url })
  await until(() => added.status === 'healthy', 5_000, 'added target probed')
  const gone = pool.remove('t0')
  await sleep(50)
  const probesOfGone = r.samples.filter((s) => s.target === gone).length
  await sleep(600)
  t.equal(r.samples.filter((s) => s.target === gone).length, probesOfGone, 'a removed target is no longer probed')
  t.equal(r.checker.size, 30)
})

t.test('stop() clears every timer: no probe after it', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(() => up.close())
  const pool = new UpstreamPool('u', [{ id: 'a', url: up.url }, { id: 'b', url: up.url }])
  const r = rig(t, pool, { interval: 40 })
  await until(() => r.samples.length >= 4, 3_000, 'a few probes')
  await r.checker.stop()
  const hits = up.hits.get('/health')
  await sleep(300)
  t.equal(up.hits.get('/health'), hits, 'no probe reached the server after stop')
  t.equal(r.checker.inFlight, 0)
})

t.test('a passing active probe re-admits a passively ejected target at once', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(() => up.close())
  const pool = new UpstreamPool('u', [{ id: 'a', url: up.url }, { id: 'b', url: up.url }])
  const r = rig(t, pool, { interval: 60 })
  const a = pool.get('a')!
  await until(() => a.status === 'healthy', 3_000, 'healthy')
  r.state.eject(a, Date.now() + 60_000, 'consecutive_failures', 'status 502')
  t.notOk(a.isEligible(Date.now()))
  await until(() => a.ejectedUntil === 0, 3_000, 're-admitted')
  t.match(r.events.filter((e) => e.type === 'readmitted'), [{ target: a, reason: 'active_probe' }])
})

t.test('tcp checker: up, down, up', async (t) => {
  const up = await startHealthUpstream()
  t.teardown(() => up.close())
  const pool = new UpstreamPool('tcp', [{ id: 'a', url: up.url }])
  rig(t, pool, { type: 'tcp', interval: 50, timeout: 300 })
  const a = pool.get('a')!
  await until(() => a.status === 'healthy', 3_000, 'healthy')
  await up.kill()
  await until(() => a.status === 'unhealthy', 3_000, 'unhealthy')
  await up.restart()
  await until(() => a.status === 'healthy', 3_000, 'healthy again')
  t.equal(up.hits.size, 0, 'a tcp probe sends no HTTP request')
})

t.test('invalid options are refused with the config error code', async (t) => {
  const pool = new UpstreamPool('u', [])
  const state = new HealthRegistry().forPool(pool)
  t.throws(() => new ActiveChecker(state, { type: 'http', interval: 0, timeout: 1, healthyThreshold: 1, unhealthyThreshold: 1 }),
    { code: 'FHG_ERR_INVALID_CONFIG' })
})
