// lib/workers without processes: the protocol's tuples, the IPC store's batching over a fake channel
// answered by a real LimitHost, and the worker link's roles, shares and gathers.
import t from 'tap'
import { IpcStore, createWorkerStores } from '../../lib/workers/ipc-store.js'
import { LimitHost } from '../../lib/workers/limit-host.js'
import { fromGrantTuple, isWorkerMessage, refundCall, ruleOf, takeCall, toGrantTuple, type Channel, type PrimaryMessage, type WorkerMessage } from '../../lib/workers/protocol.js'
import { WorkerLink } from '../../lib/workers/worker-link.js'
import { WorkerProbes, chainCoordinators } from '../../lib/workers/probes.js'
import { mergeMetrics } from '../../lib/workers/metrics-merge.js'
import { RateLimitStoreError } from '../../lib/ratelimit/deadline.js'
import type { LimitRule } from '../../lib/ratelimit/types.js'
import { Counter, Registry } from 'prom-client'

const rule: LimitRule = { algorithm: 'fixed_window', limit: 5, window: 60_000 }
// the store's timers are unref()ed (a server holds the loop): this one holds it for the tests
const keep = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keep) })

/** A channel whose sends are recorded; `host` (when given) answers rate-limit batches as the primary does. */
function fakeChannel (host?: LimitHost, slot = 1): Channel<WorkerMessage, PrimaryMessage> & { sent: WorkerMessage[], deliver: (m: PrimaryMessage) => void, hold: boolean, release: () => void } {
  const listeners = new Set<(m: PrimaryMessage) => void>()
  const held: PrimaryMessage[] = []
  const ch = {
    sent: [] as WorkerMessage[],
    hold: false,
    send (m: WorkerMessage) {
      ch.sent.push(m)
      if (host !== undefined && m.t === 'rl') {
        const answer: PrimaryMessage = { fhg: 1, t: 'rl', id: m.id, grants: host.handle(m.calls, slot) }
        if (ch.hold) held.push(answer)
        else setImmediate(() => { ch.deliver(answer) })
      }
    },
    onMessage (fn: (m: PrimaryMessage) => void) { listeners.add(fn); return () => { listeners.delete(fn) } },
    deliver (m: PrimaryMessage) { for (const fn of listeners) fn(m) },
    release () { for (const m of held.splice(0)) ch.deliver(m) },
  }
  return ch
}

t.test('protocol: calls and grants as tuples, and back', async (t) => {
  t.same(takeCall('k', rule, 3, 1), [0, 'k', 'fixed_window', 5, 60_000, 3, 1])
  t.same(refundCall('k', rule, 2, 7), [1, 'k', 'fixed_window', 5, 60_000, 2, 7])
  t.same(ruleOf(takeCall('k', { ...rule, leaseSize: 9 }, 1, 1)), rule, 'the primary needs no leaseSize')
  const g = { allowed: true, remaining: 4, resetMs: 100, retryAfterMs: 0, granted: 1, epoch: 3 }
  t.same(fromGrantTuple(toGrantTuple(g)), g)
  t.ok(isWorkerMessage({ fhg: 1, t: 'ready' }))
  t.notOk(isWorkerMessage({ t: 'ready' }), 'an app\'s own cluster message passes by')
  t.notOk(isWorkerMessage(null))
})

t.test('ipc store: the calls of one turn go as one message, answered in order; the limit is exact', async (t) => {
  const host = new LimitHost()
  t.teardown(async () => { await host.close() })
  const ch = fakeChannel(host)
  const store = new IpcStore(ch)
  t.teardown(async () => { await store.close() })
  const decisions = await Promise.all(Array.from({ length: 8 }, async () => await store.consume('k', rule, 1)))
  t.equal(ch.sent.length, 1, 'one IPC message for 8 decisions of one turn')
  t.equal(store.batches, 1)
  t.equal(store.calls, 8)
  t.same(decisions.map((d) => d.allowed), [true, true, true, true, true, false, false, false], 'exactly 5 of 8, in order')
  t.same(decisions.slice(0, 5).map((d) => d.remaining), [4, 3, 2, 1, 0])
  const next = await store.consume('k', rule, 1)
  t.equal(ch.sent.length, 2, 'a later turn: its own message')
  t.equal(next.allowed, false)
  t.ok(next.retryAfterMs > 0)
})

t.test('ipc store: two workers\' stores share the primary\'s counters', async (t) => {
  const host = new LimitHost()
  t.teardown(async () => { await host.close() })
  const a = new IpcStore(fakeChannel(host))
  const b = new IpcStore(fakeChannel(host))
  t.teardown(async () => { await a.close(); await b.close() })
  const all = await Promise.all(Array.from({ length: 10 }, async (_, i) => await (i % 2 === 0 ? a : b).consume('shared', rule, 1)))
  t.equal(all.filter((d) => d.allowed).length, 5, '5 across both')
})

t.test('local fallback over IPC: the node counts afresh when its first worker degrades, not when a second one does', async (t) => {
  const host = new LimitHost()
  t.teardown(async () => { await host.close() })
  const cha = fakeChannel(host, 1)
  const a = new IpcStore(cha, { local: true })
  const b = new IpcStore(fakeChannel(host, 2), { local: true })
  t.teardown(async () => { await a.close(); await b.close() })
  const allowed = async (s: IpcStore, n: number): Promise<number> => (await Promise.all(Array.from({ length: n }, async () => await s.consume('f', rule, 1)))).filter((d) => d.allowed).length
  t.equal(await allowed(a, 2), 2, 'counts from an earlier outage')
  a.clear() // worker 1's Redis store degrades: the node's outage begins
  t.equal(await allowed(a, 3), 3)
  t.same((cha.sent.at(-1) as { local?: number }).local, 1, 'the calls name the fallback counters')
  b.clear() // worker 2 degrades later: its requests count on top of worker 1's
  t.equal(await allowed(b, 3), 2, '5 across both workers, not 5 each')
  a.recovered()
  t.equal(await allowed(a, 1), 0, 'worker 2 still degraded: the outage goes on')
  b.recovered()
  a.clear()
  t.equal(await allowed(a, 6), 5, 'a new outage: counted afresh')
  host.left(1)
  b.clear()
  t.equal(await allowed(b, 1), 1, 'worker 1 is gone: worker 2 opens a new outage')
  const chx = fakeChannel(host, 1)
  const exact = new IpcStore(chx)
  t.teardown(async () => { await exact.close() })
  exact.clear()
  exact.recovered()
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(chx.sent.length, 0, 'clear() and recovered() of an exact store send nothing')
})

t.test('ipc store: a primary that does not answer fails the batch after the timeout (the outage policy applies)', async (t) => {
  const ch = fakeChannel() // nobody answers
  const store = new IpcStore(ch, { timeout: 30 })
  t.teardown(async () => { await store.close() })
  const err = await store.consume('k', rule, 1).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof RateLimitStoreError, 'a store error')
  t.equal((err as RateLimitStoreError).kind, 'timeout')
  // a late answer to the timed-out batch is ignored
  ch.deliver({ fhg: 1, t: 'rl', id: 1, grants: [toGrantTuple({ allowed: true, remaining: 1, resetMs: 1, retryAfterMs: 0, granted: 1, epoch: 0 })] })
  t.pass('a late answer is dropped')
})

t.test('ipc store: close rejects what waits', async (t) => {
  const host = new LimitHost()
  t.teardown(async () => { await host.close() })
  const ch = fakeChannel(host)
  ch.hold = true
  const store = new IpcStore(ch)
  const p = store.consume('k', rule, 1).then(() => 'decided', (e: unknown) => (e as Error).name)
  await new Promise((resolve) => setImmediate(resolve))
  await store.close()
  t.equal(await p, 'RateLimitStoreError')
  await t.rejects(store.consume('k', rule, 1), RateLimitStoreError, 'closed: no more calls')
})

t.test('lease rules: a LeaseStore over IPC spends slices locally and gives unused units back on close', async (t) => {
  const host = new LimitHost()
  t.teardown(async () => { await host.close() })
  const ch = fakeChannel(host)
  const stores = createWorkerStores(ch)
  const lease: LimitRule = { algorithm: 'fixed_window', limit: 100, window: 60_000, leaseSize: 10 }
  for (let i = 0; i < 5; i++) t.ok((await stores.lease.consume('l', lease, 1)).allowed)
  const calls = stores.exact.calls
  t.ok(calls <= 2, `5 decisions cost ${calls} IPC calls (one slice, perhaps a prefetch)`)
  await stores.close()
  // the refund reached the primary: its counter holds only the 5 spent units
  const g = host.store.takeSync('l', lease, 100, 1)
  t.equal(g.granted, 95, 'the unused units went back')
})

t.test('worker link: roles, shares, and the primary\'s gathers', async (t) => {
  const ch = fakeChannel()
  const link = new WorkerLink(ch, 2)
  t.teardown(() => { link.close() })
  t.equal(link.prober, false, 'slot 2 does not probe until told')
  ch.deliver({ fhg: 1, t: 'role', slot: 2, prober: true })
  t.equal(link.prober, true)
  t.equal(new WorkerLink(fakeChannel(), 1).prober, true, 'slot 1 probes from the start')

  const got: unknown[] = []
  link.onShared((s, from) => got.push([s.kind, from]))
  ch.deliver({ fhg: 1, t: 'share', from: 1, shared: { kind: 'hint', upstream: 'u', target: 'a', hint: 'ejected', until: 1 } })
  t.same(got, [['hint', 1]])

  link.onCollect('status', () => ({ slot: 2 }))
  ch.deliver({ fhg: 1, t: 'collect', id: 7, what: 'status' })
  await new Promise((resolve) => setImmediate(resolve))
  t.same(ch.sent.at(-1), { fhg: 1, t: 'report', id: 7, data: { slot: 2 } }, 'this worker\'s part')

  const asked = link.gather('metrics')
  const req = ch.sent.at(-1) as { id: number }
  ch.deliver({ fhg: 1, t: 'gathered', id: req.id, data: { text: 'x', contentType: 'text/plain' } })
  t.same(await asked, { text: 'x', contentType: 'text/plain' })
  const failed = link.gather('status')
  ch.deliver({ fhg: 1, t: 'gathered', id: (ch.sent.at(-1) as { id: number }).id, error: 'boom' })
  await t.rejects(failed, /boom/)
})

t.test('probes: only the prober probes; results are shared; the cluster\'s coordinator comes second', async (t) => {
  const ch = fakeChannel()
  const link = new WorkerLink(ch, 1)
  t.teardown(() => { link.close() })
  const probes = new WorkerProbes(link)
  t.equal(probes.shouldProbe(), true)
  probes.share('u', { id: 'a' } as never, { ok: true, durationMs: 1 })
  t.match(ch.sent.at(-1), { t: 'share', shared: { kind: 'probe', upstream: 'u', target: 'a' } })
  link.prober = false
  t.equal(probes.shouldProbe(), false)
  const cluster = { holder: false, shared: 0, join: () => () => {}, shouldProbe () { return this.holder }, share () { this.shared++ } }
  const both = chainCoordinators(probes, cluster)
  link.prober = true
  t.equal(both.shouldProbe('u'), false, 'the node\'s prober, but another node holds the lease')
  cluster.holder = true
  t.equal(both.shouldProbe('u'), true)
  both.share('u', { id: 'a' } as never, { ok: true, durationMs: 1 })
  t.equal(cluster.shared, 1, 'shared with the cluster too')
  t.equal(chainCoordinators(probes, undefined), probes)
})

t.test('metrics merge: counters of every worker add up', async (t) => {
  const parts = await Promise.all([3, 4].map(async (n) => {
    const r = new Registry()
    new Counter({ name: 'hits_total', help: 'h', registers: [r] }).inc(n)
    return await r.getMetricsAsJSON()
  }))
  const m = await mergeMetrics(parts)
  t.match(m.text, /hits_total 7/)
})

t.test('config: node.workers is a number of processes or auto, default 1', async (t) => {
  const { validateConfig, ConfigError } = await import('../../lib/config/index.js')
  const base = { upstreams: { u: { targets: [{ id: 'a', url: 'http://127.0.0.1:1' }] } }, routes: [{ path: '/', upstream: 'u' }] }
  t.equal(validateConfig(base).node.workers, 1, 'default: one process, as before')
  t.equal(validateConfig({ ...base, node: { workers: 4 } }).node.workers, 4)
  t.equal(validateConfig({ ...base, node: { workers: 'auto' } }).node.workers, 'auto')
  for (const bad of [0, 'many', 1.5]) {
    t.throws(() => validateConfig({ ...base, node: { workers: bad } }), ConfigError, `${String(bad)} is refused`)
  }
})
