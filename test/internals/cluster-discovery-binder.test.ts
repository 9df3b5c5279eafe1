// DiscoveryBinder without Fastify: discovered instances bound to upstream pools (added, removed, static
// targets win, config sync keeps the discovered Target objects), on a StaticDiscovery source.
import t from 'tap'
import { StaticDiscovery } from '../../lib/cluster/discovery.js'
import { DiscoveryBinder, type DiscoveryBinderLog } from '../../lib/cluster/discovery-binder.js'
import { UpstreamRegistry } from '../../lib/upstream/registry.js'

const url = (port: number): string => `http://127.0.0.1:${port}`
const tick = async (): Promise<void> => { await new Promise((resolve) => setImmediate(resolve)) }

function setup (o: { source?: StaticDiscovery | null } = {}): { reg: UpstreamRegistry, src: StaticDiscovery, binder: DiscoveryBinder, warns: string[], ids: () => string[] } {
  const reg = new UpstreamRegistry()
  reg.upsert('api', { targets: [{ id: 's1', url: url(1001) }] })
  const src = o.source === null ? new StaticDiscovery() : o.source ?? new StaticDiscovery({ svc: [{ id: 'i1', url: url(2001) }, { id: 'i2', url: url(2002) }] })
  const warns: string[] = []
  const log: DiscoveryBinderLog = { info () {}, warn (_obj, msg) { warns.push(msg) } }
  const binder = new DiscoveryBinder({ upstreams: reg, source: o.source === null ? undefined : src, log })
  const ids = (): string[] => reg.get('api')!.pool.targets.map((x) => x.id).sort()
  return { reg, src, binder, warns, ids }
}
const wanted = { api: { discovery: { service: 'svc' }, targets: [{ id: 's1' }] } }

t.test('instances join the static targets once started, and follow the source', async (t) => {
  const { reg, src, binder, ids } = setup()
  t.teardown(() => { binder.close() })
  binder.want(wanted)
  await tick()
  t.same(ids(), ['s1'], 'nothing bound before start')
  binder.start()
  await tick()
  t.same(ids(), ['i1', 's1', 'i2'].sort(), 'the instances are added')
  t.same([...binder.bound()], [['api', 'svc']])

  src.set('svc', [{ id: 'i2', url: url(2002), weight: 3, metadata: { zone: 'b' } }])
  t.same(ids(), ['i2', 's1'], 'an instance that left is removed')
  const i2 = reg.get('api')!.pool.get('i2')!
  t.equal(i2.weight, 3, 'weight follows the source')
  t.same(i2.metadata, { zone: 'b' }, 'metadata follows the source')

  src.set('svc', [{ id: 'i2', url: url(2003) }])
  t.not(reg.get('api')!.pool.get('i2'), i2, 'a new url: a new Target')
  t.equal(reg.get('api')!.pool.get('i2')!.url, url(2003))
})

t.test('static targets win over an instance of the same id', async (t) => {
  const { reg, src, binder, ids, warns } = setup()
  t.teardown(() => { binder.close() })
  binder.want(wanted)
  binder.start()
  src.set('svc', [{ id: 's1', url: url(2009) }, { id: 'i1', url: url(2001) }])
  t.same(ids(), ['i1', 's1'])
  t.equal(reg.get('api')!.pool.get('s1')!.url, url(1001), 'the static target keeps its url')
  t.same(warns.filter((w) => /already holds/.test(w)).length, 0, 'a static id is skipped without a warning')
})

t.test('config sync rebuilds the pool from its static targets: the discovered Target objects come back', async (t) => {
  const { reg, binder, ids } = setup()
  t.teardown(() => { binder.close() })
  binder.want(wanted)
  binder.start()
  await tick()
  const i1 = reg.get('api')!.pool.get('i1')!
  reg.reconcile({ api: { targets: [{ id: 's1', url: url(1001) }, { id: 's2', url: url(1002) }] } })
  t.same(ids(), ['i1', 'i2', 's1', 's2'])
  t.equal(reg.get('api')!.pool.get('i1'), i1, 'the same Target, its state kept')
})

t.test('unbinding takes the discovered targets out; removed upstreams stop their watch', async (t) => {
  const { reg, src, binder, ids } = setup()
  t.teardown(() => { binder.close() })
  binder.want(wanted)
  binder.start()
  await tick()
  binder.want({ api: { targets: [{ id: 's1' }] } })
  t.same(ids(), ['s1'], 'discovery dropped from the config: static targets only')
  t.same([...binder.bound()], [])

  binder.want(wanted)
  await tick()
  t.same(ids(), ['i1', 'i2', 's1'])
  reg.remove('api')
  t.same([...binder.bound()], [], 'a removed upstream is unbound')
  src.set('svc', [{ id: 'i9', url: url(2999) }]) // nothing to change, nothing thrown
  t.pass()
})

t.test('without a source, or with a service name that cannot be a key: said once, static targets served', async (t) => {
  const { binder, ids, warns } = setup({ source: null })
  binder.want(wanted)
  binder.start()
  binder.want(wanted)
  t.same(ids(), ['s1'])
  t.equal(warns.length, 1, 'one warning, not one per apply')
  t.match(warns[0], /no service registry without cluster.redis; serving the static targets only/)
  binder.close()

  const b2 = setup()
  b2.binder.want({ api: { discovery: { service: 'has space' } } })
  b2.binder.start()
  await tick()
  t.same(b2.ids(), ['s1'])
  t.match(b2.warns, [/cannot be a registry key/])
  b2.binder.close()
})

t.test('close: the source is no longer followed', async (t) => {
  const { src, binder, ids } = setup()
  binder.want(wanted)
  binder.start()
  await tick()
  binder.close()
  src.set('svc', [])
  t.same(ids(), ['i1', 'i2', 's1'], 'the pool keeps what it holds')
})
