// HealthSupervisor without Fastify: checks started per upstream, stopped with it, restarted in place when
// options change (a bad change keeps the running checks), fed through the upstream's try observers.
import t from 'tap'
import { HealthRegistry } from '../../lib/health/registry.js'
import { HealthSupervisor, expandStatuses, type UpstreamHealthOptions } from '../../lib/health/supervisor.js'
import { UpstreamRegistry } from '../../lib/upstream/registry.js'

const url = (port: number): string => `http://127.0.0.1:${port}`
const passive = (consecutiveFailures: number): UpstreamHealthOptions => ({
  passive: { consecutiveFailures, baseEjectionTime: 60_000, maxEjectionPercent: 100, failureStatuses: [[502, 504]] },
})

function setup (options: Record<string, { healthCheck?: UpstreamHealthOptions }> = {}): { reg: UpstreamRegistry, sup: HealthSupervisor, registry: HealthRegistry, closeErrors: unknown[] } {
  const reg = new UpstreamRegistry()
  reg.upsert('api', { targets: [{ id: 'a', url: url(1001) }, { id: 'b', url: url(1002) }] })
  const registry = new HealthRegistry()
  const closeErrors: unknown[] = []
  const sup = new HealthSupervisor({ upstreams: reg, registry, options, onCloseError: (e) => closeErrors.push(e) })
  return { reg, sup, registry, closeErrors }
}

/** Three 502s on target `id` through the upstream's observers, as the proxy reports tries. */
function fail (reg: UpstreamRegistry, id: string, n: number): void {
  const e = reg.get('api')!
  const target = e.pool.get(id)!
  for (let i = 0; i < n; i++) {
    const now = Date.now()
    for (const o of e.observers) o.onTryStart?.(target, now)
    for (const o of e.observers) o.onTryEnd?.(target, { statusCode: 502, aborted: false } as never, now)
  }
}

t.test('expandStatuses: ranges as a status list', async (t) => {
  t.same(expandStatuses([500, [502, 504]]), [500, 502, 503, 504])
  t.equal(expandStatuses(undefined), undefined)
})

t.test('checks start with the app, follow upstreams added and removed, and stop on close', async (t) => {
  const { reg, sup } = setup({ api: { healthCheck: passive(3) } })
  t.same(sup.running(), [], 'no checks (no timers) before start')
  sup.start()
  t.same(sup.running(), ['api'])
  t.equal(reg.get('api')!.observers.length, 1, 'one observer on the upstream')
  reg.upsert('late', { targets: [{ id: 'x', url: url(1003) }] })
  t.same(sup.running().sort(), ['api', 'late'], 'an upstream added later gets its checks at once')
  const late = reg.get('late')!
  reg.remove('late')
  t.same(sup.running(), ['api'], 'a removed upstream loses its checks')
  t.equal(late.observers.length, 0, 'and its observer')
  await sup.close()
  t.same(sup.running(), [])
  reg.upsert('after', { targets: [{ id: 'y', url: url(1004) }] })
  t.same(sup.running(), [], 'nothing attached after close')
})

t.test('try results reach the passive detector through the observers', async (t) => {
  const { reg, sup, registry } = setup({ api: { healthCheck: passive(2) } })
  t.teardown(async () => { await sup.close() })
  const ejected: string[] = []
  registry.subscribe((e) => { if (e.type === 'ejected') ejected.push(e.target.id) })
  sup.start()
  fail(reg, 'a', 2)
  t.same(ejected, ['a'], 'two 502s in a row eject the target (consecutiveFailures 2)')
  t.equal(reg.get('api')!.pool.get('a')!.isEligible(Date.now()), false)
})

t.test('configure: a restart in place when options change, none when they do not; a bad change keeps the running checks', async (t) => {
  const { reg, sup, registry } = setup({ api: { healthCheck: { ...passive(5), required: false } } })
  t.teardown(async () => { await sup.close() })
  t.equal(sup.required('api'), false)
  t.equal(sup.required('other'), true, 'required by default')
  t.equal(sup.configure('api', { ...passive(5), required: false }), false, 'before start, same options: nothing')
  sup.start()
  const firstObserver = reg.get('api')!.observers[0]
  t.equal(sup.configure('api', { ...passive(5), required: false }), false, 'same options: no restart')
  t.equal(sup.configure('api', passive(1)), true, 'new options: restarted')
  t.equal(reg.get('api')!.observers.length, 1, 'one observer still')
  t.not(reg.get('api')!.observers[0], firstObserver, 'the new checks observe')
  t.equal(sup.required('api'), true, 'the new options apply')
  const ejected: string[] = []
  registry.subscribe((e) => { if (e.type === 'ejected') ejected.push(e.target.id) })
  fail(reg, 'b', 1)
  t.same(ejected, ['b'], 'one failure ejects now (consecutiveFailures 1)')

  const running = reg.get('api')!.observers[0]
  t.throws(() => sup.configure('api', passive(0)), /consecutiveFailures/, 'options that cannot run throw')
  t.equal(reg.get('api')!.observers[0], running, 'the running checks stay')
  t.equal(sup.configure('api', passive(1)), false, 'and their options: the same ones again are no change')
  t.equal(sup.configure('nope', passive(2)), false, 'an upstream without checks: kept for later')
})

t.test('hints and shared probes: unknown targets and upstreams are said so', async (t) => {
  const { sup } = setup({ api: { healthCheck: passive(3) } })
  t.teardown(async () => { await sup.close() })
  sup.start()
  t.equal(sup.applyHint('api', 'zzz', { kind: 'ejected', from: 'n2', until: Date.now() + 1000 }), 'unknown_target')
  t.equal(sup.applyHint('nope', 'a', { kind: 'ejected', from: 'n2', until: Date.now() + 1000 }), 'unknown_target')
  t.equal(sup.applyHint('api', 'a', { kind: 'ejected', from: 'n2', until: Date.now() + 1000 }), 'applied', 'a known target takes the hint')
  t.equal(sup.applySharedProbe('api', 'a', { ok: true } as never), false, 'no shared active checks: not taken')
})
