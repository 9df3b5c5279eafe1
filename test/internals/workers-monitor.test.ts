// node.workers and the monitor, without processes: the node's summary from its workers' (summary-merge.ts),
// one evaluator per node (AlertManager's `evaluates`), and the node's alert states held by the primary.
import t from 'tap'
import { aggregate, metricValue } from '../../lib/monitor/aggregate.js'
import { AlertManager } from '../../lib/monitor/alert-manager.js'
import type { Alert } from '../../lib/monitor/alert.js'
import { compileRule, compileRules } from '../../lib/monitor/rule.js'
import { mergeSummaries } from '../../lib/monitor/summary-merge.js'
import type { NodeSummary, TargetView } from '../../lib/monitor/summary.js'
import { HostCalls } from '../../lib/workers/host-calls.js'
import { IpcAlertStore } from '../../lib/workers/ipc-alerts.js'
import { workerMonitorScope } from '../../lib/workers/monitor-scope.js'
import type { Channel, PrimaryMessage, WorkerMessage } from '../../lib/workers/protocol.js'
import { WorkerLink } from '../../lib/workers/worker-link.js'

const keep = setInterval(() => {}, 1000)
t.teardown(() => { clearInterval(keep) })

const counts = (n: number, e: number, b: number[] = [n]): { n: number, e: number, s: number, b: number[] } => ({ n, e, s: n * 2, b })
const tg = (id: string, status: string, ejected: 0 | 1 = 0, circuit = 'closed', inFlight = 0, ewma = 2): TargetView => [id, status, ejected, circuit, inFlight, ewma]
function part (n: number, e: number, targets: TargetView[], load: Partial<NodeSummary> = {}): NodeSummary {
  return { t: 1000, cpu: 10, rss: 100, lag: 5, fl: 1, u: { api: { all: counts(n, e), m1: { ...counts(n, e), d: 30_000 }, m5: { ...counts(n, e), d: 30_000 }, tg: targets } }, ev: [], ...load }
}

t.test('the node\'s summary: counts summed, the busiest worker\'s cpu and lag, memory summed, each target by its worst view', async (t) => {
  const a = part(30, 3, [tg('t1', 'healthy', 0, 'closed', 2, 4), tg('t2', 'healthy')], { cpu: 80, lag: 3, rss: 90, ev: [{ t: 5, type: 'x', upstream: 'api' }] })
  const b = part(10, 1, [tg('t1', 'healthy', 0, 'closed', 1, 2), tg('t2', 'healthy', 1)], { t: 1200, cpu: 20, lag: 9, rss: 110, ev: [{ t: 3, type: 'y', upstream: 'api' }] })
  b.u.api.m1.d = 31_000
  const m = mergeSummaries([a, b])
  t.same(m.u.api.all, { n: 40, e: 4, s: 80, b: [40] })
  t.same(m.u.api.m1, { n: 40, e: 4, s: 80, b: [40], d: 31_000 }, 'windows add up; the longest span')
  t.same({ t: m.t, cpu: m.cpu, lag: m.lag, rss: m.rss, fl: m.fl }, { t: 1200, cpu: 80, lag: 9, rss: 200, fl: 2 })
  t.same(m.u.api.tg, [['t1', 'healthy', 0, 'closed', 3, 3], ['t2', 'healthy', 1, 'closed', 0, 2]], 'in flight summed, EWMA the mean, ejected in any')
  t.same(m.ev.map((e) => e.type), ['y', 'x'], 'events by time')
  t.equal(mergeSummaries([a]), a, 'one worker: its own')
  // a rule reads the node's traffic, not one worker's share
  const view = aggregate([{ id: 'gw', address: '', status: 'ready', configVersion: 1, lastSeen: 0, summary: m }], 2000)
  t.equal(view.totals.totalRequests, 40)
  t.equal(metricValue(view, compileRule({ name: 'r', when: 'request_rate > 1', window: '1m' })), 1.29, '40 requests over 31 s')
})

/** Two workers' links on one fake primary (HostCalls), the first named the evaluator. */
function node (): { links: WorkerLink[], calls: HostCalls, evaluator: { slot: number } } {
  const calls = new HostCalls()
  const evaluator = { slot: 1 }
  const links = [1, 2].map((slot) => {
    const listeners = new Set<(m: PrimaryMessage) => void>()
    const ch: Channel<WorkerMessage, PrimaryMessage> = {
      send (m) {
        if (m.t !== 'call') return
        void Promise.resolve(calls.handle(m.call, { slot, evaluator: evaluator.slot === slot })).then((a) => {
          setImmediate(() => { for (const fn of listeners) fn({ fhg: 1, t: 'answer', id: m.id, value: a.value }) })
        })
      },
      onMessage (fn) { listeners.add(fn); return () => { listeners.delete(fn) } },
    }
    return new WorkerLink(ch, slot)
  })
  return { links, calls, evaluator }
}

t.test('one evaluator per node: only the named worker evaluates and notifies; the states are the node\'s (the primary\'s)', async (t) => {
  const { links, evaluator } = node()
  t.teardown(() => { for (const l of links) l.close() })
  const sent: Array<[number, Alert]> = []
  let now = 0
  const view = aggregate([{ id: 'gw', address: '', status: 'ready', configVersion: 1, lastSeen: 0, summary: part(10, 0, [tg('t1', 'healthy')]) }], 0)
  const managers = links.map((link) => new AlertManager({
    nodeId: 'gw',
    cluster: 'c',
    rules: compileRules([{ name: 'always', when: 'nodes >= 1', cooldown: 60_000 }]),
    alerters: [{ minSeverity: 'info', send: (a) => { sent.push([link.slot, a]) } }],
    store: new IpcAlertStore(link, 500),
    interval: 10_000,
    metrics: async () => view,
    evaluates: () => evaluator.slot === link.slot,
    now: () => now,
  }))
  t.teardown(async () => { for (const m of managers) await m.close() })
  for (let i = 0; i < 3; i++) {
    await Promise.all(managers.map(async (m) => await m.evaluate()))
    now += 10_000
  }
  t.same(sent.map(([slot, a]) => [slot, a.rule, a.status]), [[1, 'always', 'firing']], 'one notification for the node, by the evaluator')
  const lists = await Promise.all(managers.map(async (m) => await m.list()))
  for (const l of lists) {
    t.same(l.firing.map((f) => f.rule), ['always'], 'every worker lists the node\'s firing rule')
    t.equal(l.recent.length, 1)
    t.equal(l.evaluator, 'gw')
  }
  // the evaluator dies: the primary names worker 2, which carries on from the node's states (no second firing)
  evaluator.slot = 2
  await managers[1].evaluate()
  t.equal(sent.length, 1, 'the takeover does not notify again within the cooldown')
  now += 60_000
  await managers[1].evaluate()
  t.same(sent.map(([slot]) => slot), [1, 2], 'after the cooldown the new evaluator notifies')
})

t.test('the primary refuses a commit from a worker it no longer names (as Redis refuses one without the lease)', async (t) => {
  const { links, evaluator } = node()
  t.teardown(() => { for (const l of links) l.close() })
  const store = new IpcAlertStore(links[0], 500)
  t.equal(await store.commit('gw', 0, new Map([['r', { status: 'inactive' }]]), [], []), true)
  evaluator.slot = 2
  t.equal(await store.commit('gw', 0, new Map(), ['r'], []), false, 'refused')
  t.same([...await store.load()], [['r', { status: 'inactive' }]], 'nothing written')
})

t.test('the node\'s summary through the primary: merged when every live worker gave its own, refused when one did not', async (t) => {
  const listeners = new Set<(m: PrimaryMessage) => void>()
  let answer: unknown
  const ch: Channel<WorkerMessage, PrimaryMessage> = {
    send (m) {
      if (m.t === 'gather') setImmediate(() => { for (const fn of listeners) fn({ fhg: 1, t: 'gathered', id: m.id, data: answer }) })
    },
    onMessage (fn) { listeners.add(fn); return () => { listeners.delete(fn) } },
  }
  const link = new WorkerLink(ch, 2)
  t.teardown(() => { link.close() })
  const scope = workerMonitorScope(link)
  t.equal(scope.evaluates(), false, 'slot 2 does not evaluate until the primary names it')
  const a = part(30, 3, [tg('t1', 'healthy')])
  const b = part(10, 1, [tg('t1', 'healthy')])
  answer = { parts: [a, b], missing: 0 }
  t.equal((await scope.summary()).u.api.all.n, 40)
  answer = { parts: [a], missing: 1 }
  await t.rejects(scope.summary(), /incomplete: 1 worker/, 'a worker that did not answer in time: no summary (the round is skipped)')
  answer = { parts: [a, null], missing: 0 }
  await t.rejects(scope.summary(), /incomplete/)
})
