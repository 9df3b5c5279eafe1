import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { ConfigError, validateConfig } from '../../lib/config/index.js'
import { WebhookNotifier } from '../../lib/failover/notifier-webhook.js'
import { aggregate, metricValue, quantileMs, type ClusterMetricsView, type NodeInput } from '../../lib/monitor/aggregate.js'
import { makeAlert, toAlertmanager, toSlack, type Alert } from '../../lib/monitor/alert.js'
import { AlertManager } from '../../lib/monitor/alert-manager.js'
import { INACTIVE, parseRuleState, step, type RuleState } from '../../lib/monitor/alert-state.js'
import { MemoryAlertStore } from '../../lib/monitor/alert-store.js'
import type { Alerter } from '../../lib/monitor/alerters.js'
import { compileRule, compileRules, DEFAULT_RULES, holds, parseCondition } from '../../lib/monitor/rule.js'
import type { NodeSummary, TargetView } from '../../lib/monitor/summary.js'

t.test('the rule parser takes a metric, an operator and a number, and nothing else', async (t) => {
  t.same(parseCondition('error_rate > 0.05'), { metric: 'error_rate', op: '>', threshold: 0.05 })
  t.same(parseCondition('  healthy_ratio<0.7 '), { metric: 'healthy_ratio', op: '<', threshold: 0.7 })
  t.same(parseCondition('nodes <= 3'), { metric: 'nodes', op: '<=', threshold: 3 })
  t.same(parseCondition('p99_ms >= 1e3'), { metric: 'p99_ms', op: '>=', threshold: 1000 })
  t.same(parseCondition('cpu_percent != -1.5'), { metric: 'cpu_percent', op: '!=', threshold: -1.5 })
  t.throws(() => parseCondition('latency > 5'), /unknown metric "latency"/)
  t.throws(() => parseCondition('error_rate > 0.05 && nodes < 3'), /must be "<metric> <operator> <number>"/)
  t.throws(() => parseCondition('error_rate => 1'), /must be/)
  t.throws(() => parseCondition('process.exit() > 1'), /must be/)
  t.throws(() => parseCondition('constructor > 1'), /unknown metric "constructor"/)
  t.throws(() => parseCondition('error_rate > '), /must be/)
  t.throws(() => parseCondition(''), /must be/)
  t.equal(holds(parseCondition('error_rate > 0.05'), undefined), false, 'no data never holds')
  t.equal(holds(parseCondition('nodes < 3'), 2), true)
  t.equal(holds(parseCondition('nodes == 3'), 3), true)
})

t.test('with no rules configured the seed\'s two apply; [] means none', async (t) => {
  const rules = compileRules(undefined)
  t.same(rules.map((r) => [r.name, r.when, r.severity, r.cooldown]), [
    ['high_error_rate', 'error_rate > 0.05', 'warning', 300_000],
    ['low_healthy_instances', 'healthy_ratio < 0.7', 'critical', 60_000],
  ])
  t.equal(DEFAULT_RULES.length, 2)
  t.same(compileRules([]), [])
})

t.test('a bad rule fails boot with the path of the bad key', async (t) => {
  const bad = (alerts: unknown): string => {
    try { validateConfig({ upstreams: { a: { targets: [{ id: 'x', url: 'http://127.0.0.1:1' }] } }, alerts }) } catch (err) {
      t.ok(err instanceof ConfigError)
      return (err as Error).message
    }
    return 'valid'
  }
  t.match(bad({ rules: [{ name: 'r', when: 'erorr_rate > 0.1' }] }), /alerts\.rules\[0\]\.when: unknown metric "erorr_rate"/)
  t.match(bad({ rules: [{ name: 'r', when: 'nodes < 3', upstream: 'a' }] }), /alerts\.rules\[0\]\.upstream: nodes is a metric of nodes/)
  t.match(bad({ rules: [{ name: 'r', when: 'error_rate > 0.1', upstream: 'b' }] }), /alerts\.rules\[0\]\.upstream: unknown upstream "b"/)
  t.match(bad({ rules: [{ name: 'r', when: 'nodes < 3' }, { name: 'r', when: 'nodes < 2' }] }), /alerts\.rules\[1\]\.name: duplicate rule name/)
  t.match(bad({ rules: [{ name: 'r', when: 'nodes < 3', severity: 'fatal' }] }), /alerts\.rules\[0\]\.severity/)
  t.match(bad({ rules: [{ name: 'r', when: 'nodes < 3', window: '10m' }] }), /alerts\.rules\[0\]\.window/)
  t.match(bad({ alerters: [{ type: 'webhook' }] }), /alerts\.alerters\[0\]\.url: a webhook alerter needs a url/)
  t.match(bad({ interval: 'soon' }), /alerts\.interval/)
  const ok = validateConfig({ alerts: { interval: '2s', rules: [{ name: 'slow', when: 'p99_ms > 500', for: '30s', window: '5m', cooldown: '10m', severity: 'error' }] } })
  t.same(ok.alerts.rules?.[0], { name: 'slow', when: 'p99_ms > 500', for: 30_000, window: '5m', cooldown: 600_000, severity: 'error' })
  t.equal(ok.alerts.interval, 2000)
  t.equal(validateConfig({}).alerts.interval, 10_000, 'interval defaults to 10 s')
})

t.test('state machine: firing once, again only after the cooldown, resolved always (fake clock)', async (t) => {
  const rule = compileRule({ name: 'r', when: 'error_rate > 0.05', cooldown: 60_000 })
  let s: RuleState = INACTIVE
  const run = (value: number | undefined, now: number): string | undefined => {
    const r = step(rule, s, value, now)
    s = r.state
    return r.notify
  }
  t.equal(run(0.01, 0), undefined)
  t.equal(run(0.2, 1000), 'firing', 'fires at once without for')
  t.equal(s.status, 'firing')
  t.equal(run(0.3, 2000), undefined, 'still firing: no repeat within the cooldown')
  t.equal(run(0.3, 60_999), undefined)
  t.equal(run(0.3, 61_000), 'firing', 're-notified when the cooldown has passed')
  t.equal((s as { since: number }).since, 1000, 'a re-notification keeps the start')
  const r = step(rule, s, 0.01, 62_000)
  t.equal(r.notify, 'resolved')
  t.equal(r.startsAt, 1000, 'resolved names the firing that ended')
  s = r.state
  t.equal(run(undefined, 63_000), undefined, 'no data while inactive: nothing')
  t.equal(run(0.5, 64_000), 'firing', 'a new firing after a resolve notifies (state changes always do)')
  t.equal(run(undefined, 65_000), 'resolved', 'no data (no traffic) resolves')
})

t.test('state machine: `for` holds a rule pending; a dip resets it', async (t) => {
  const rule = compileRule({ name: 'r', when: 'nodes < 3', for: 5000 })
  let s: RuleState = INACTIVE
  const run = (v: number, now: number): string | undefined => { const r = step(rule, s, v, now); s = r.state; return r.notify }
  t.equal(run(2, 0), undefined)
  t.equal(s.status, 'pending')
  t.equal(run(2, 4999), undefined)
  t.equal(run(3, 5000), undefined, 'condition gone while pending: no notification')
  t.equal(s.status, 'inactive')
  t.equal(run(2, 6000), undefined)
  t.equal(run(2, 11_000), 'firing', 'fires once it held for 5 s')
})

t.test('a stored state is checked before use', async (t) => {
  t.same(parseRuleState(null), INACTIVE)
  t.same(parseRuleState('nope'), INACTIVE)
  t.same(parseRuleState('{"status":"firing","since":"x"}'), INACTIVE)
  t.same(parseRuleState('{"status":"firing","since":1,"notifiedAt":2,"value":3}'), { status: 'firing', since: 1, notifiedAt: 2, value: 3 })
})

const tg = (id: string, status: string, ejected: 0 | 1 = 0, circuit = 'closed'): TargetView => [id, status, ejected, circuit, 0, 1.5]
function summary (u: NodeSummary['u'], load: Partial<NodeSummary> = {}): NodeSummary {
  return { t: 0, cpu: 10, rss: 100, lag: 5, fl: 0, u, ev: [], ...load }
}
const counts = (n: number, e: number, b: number[] = [n]): { n: number, e: number, s: number, b: number[] } => ({ n, e, s: n, b })

t.test('aggregate: totals are the sum of the nodes; a target is healthy when most nodes see it routable', async (t) => {
  const nodes: NodeInput[] = [
    { id: 'a', address: 'a:1', status: 'ready', configVersion: 2, lastSeen: 0, summary: summary({ users: { all: counts(100, 10), m1: { ...counts(40, 4), d: 60_000 }, m5: { ...counts(100, 10), d: 300_000 }, tg: [tg('u1', 'healthy'), tg('u2', 'unhealthy'), tg('u3', 'healthy', 1)] } }, { cpu: 30 }) },
    { id: 'b', address: 'b:1', status: 'ready', configVersion: 2, lastSeen: 0, summary: summary({ users: { all: counts(50, 0), m1: { ...counts(20, 0), d: 60_000 }, m5: { ...counts(50, 0), d: 300_000 }, tg: [tg('u1', 'healthy'), tg('u2', 'unhealthy'), tg('u3', 'healthy', 0, 'open')] } }, { cpu: 95, rss: 2048 }) },
  ]
  const v = aggregate(nodes, 0)
  t.equal(v.totals.totalRequests, 150)
  t.equal(v.totals.errorRequests, 10)
  t.equal(v.totals.errorRate, 0.066667)
  t.equal(v.totals.nodes, 2)
  t.equal(v.totals.targetsTotal, 3)
  t.equal(v.totals.healthyTargets, 1, 'u1 healthy; u2 down everywhere; u3 ejected on one node and open on the other')
  t.equal(v.totals.healthyRatio, 0.333333)
  t.equal(v.totals.windows['1m'].totalRequests, 60)
  t.equal(v.totals.windows['1m'].requestRate, 1)
  t.same(v.nodes.map((n) => [n.id, n.totalRequests, n.cpuPercent]), [['a', 100, 30], ['b', 50, 95]])
  t.same(v.upstreams.users.targets.find((r) => r.id === 'u3')?.byNode.a, { status: 'healthy', ejected: true, circuit: 'closed', inFlight: 0, ewmaMs: 1.5 })
  const value = (when: string, upstream?: string, window?: '1m' | '5m'): number | undefined => metricValue(v, compileRule({ name: 'x', when, upstream, window }))
  t.equal(value('error_rate > 0'), 0.066667)
  t.equal(value('error_rate > 0', undefined, '5m'), 0.066667)
  t.equal(value('healthy_ratio < 1'), 0.333333)
  t.equal(value('healthy_ratio < 1', 'users'), 0.333333)
  t.equal(value('healthy_ratio < 1', 'nope'), undefined, 'an upstream nobody reports: no data')
  t.equal(value('nodes < 3'), 2)
  t.equal(value('cpu_percent > 90'), 95, 'node metrics are the worst node\'s')
  t.equal(value('rss_mb > 1024'), 2048)
  t.equal(value('unhealthy_targets > 0'), 2)
  const empty = aggregate([{ id: 'a', address: '', status: 'ready', configVersion: 0, lastSeen: 0 }], 0)
  t.equal(metricValue(empty, compileRule({ name: 'x', when: 'error_rate > 0' })), undefined, 'no traffic: no error rate')
  t.equal(empty.totals.healthyRatio, null)
})

t.test('p99 from bucket counts, interpolated like histogram_quantile', async (t) => {
  t.equal(quantileMs([], 0.99), null)
  t.equal(quantileMs([100], 0.99), 0.99, '100 requests under 1 ms: p99 ~0.99 ms')
  t.equal(quantileMs([0, 0, 0, 0, 0, 0, 0, 100], 0.5), 175, 'half-way in the 100-250 ms bucket')
  const b = new Array(14).fill(0)
  b[13] = 5
  t.equal(quantileMs(b, 0.99), 10_000, 'past the last bound: the last bound')
})

t.test('alert payloads: json, Alertmanager v2 and Slack', async (t) => {
  const rule = compileRule({ name: 'high_error_rate', when: 'error_rate > 0.05', upstream: 'users', severity: 'critical' })
  const a = makeAlert({ rule, status: 'resolved', value: 0.01, startsAt: 1000, now: 61_000, cluster: 'c1', nodeId: 'n1' })
  t.match(a, { status: 'resolved', rule: 'high_error_rate', severity: 'critical', value: 0.01, threshold: 0.05, startsAt: new Date(1000).toISOString(), endsAt: new Date(61_000).toISOString(), cluster: 'c1', details: { upstream: 'users', evaluatedBy: 'n1', window: '1m' } })
  t.match(a.title, /RESOLVED.*high_error_rate.*users/)
  const am = toAlertmanager(a) as Array<Record<string, Record<string, string>>>
  t.same(am[0].labels, { alertname: 'high_error_rate', severity: 'critical', cluster: 'c1', upstream: 'users' })
  t.equal((am[0] as unknown as { endsAt: string }).endsAt, a.endsAt)
  const slack = toSlack(a) as { text: string, attachments: unknown[] }
  t.match(slack.text, /high_error_rate/)
  t.equal(slack.attachments.length, 1)
  const f = makeAlert({ rule, status: 'firing', value: undefined, startsAt: 1000, now: 1000, cluster: 'c1', nodeId: 'n1' })
  t.equal(f.value, null)
  t.notOk('endsAt' in f)
})

t.test('AlertManager: one notification per transition, none within the cooldown, minSeverity filters (fake clock)', async (t) => {
  let now = 0
  let value = 0
  const view = (): ClusterMetricsView => aggregate([{ id: 'n1', address: '', status: 'ready', configVersion: 1, lastSeen: 0, summary: summary({ u: { all: counts(100, value), m1: { ...counts(100, value), d: 60_000 }, m5: { ...counts(100, value), d: 60_000 }, tg: [tg('t', 'healthy')] } }) }], now)
  const got: Alert[] = []
  const quiet: Alert[] = []
  const all: Alerter = { minSeverity: 'info', send: (a) => got.push(a) }
  const onlyCritical: Alerter = { minSeverity: 'critical', send: (a) => quiet.push(a) }
  const m = new AlertManager({ nodeId: 'n1', cluster: 'c', rules: compileRules(undefined), alerters: [all, onlyCritical], store: new MemoryAlertStore(), interval: 10_000, metrics: view, now: () => now })
  t.same(await m.evaluate(), [])
  value = 10
  now = 10_000
  t.same((await m.evaluate()).map((a) => [a.status, a.rule]), [['firing', 'high_error_rate']])
  for (now = 20_000; now < 310_000; now += 10_000) t.same(await m.evaluate(), [], `nothing at ${now}`)
  now = 310_000
  t.same((await m.evaluate()).map((a) => a.status), ['firing'], 're-notified after the 5 min cooldown')
  value = 0
  now = 320_000
  t.same((await m.evaluate()).map((a) => a.status), ['resolved'])
  t.equal(got.length, 3)
  t.equal(quiet.length, 0, 'a warning never reaches a critical-only alerter')
  const list = await m.list()
  t.same(list.firing, [])
  t.same(list.recent.map((a) => a.status), ['resolved', 'firing', 'firing'], 'newest first')
  await m.close()
})

t.test('webhook notifier retries a failed POST with backoff, then gives up', async (t) => {
  let hits = 0
  const bodies: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => { body += c.toString() })
    req.on('end', () => {
      hits++
      bodies.push(body)
      res.statusCode = hits <= 2 ? 503 : 200
      res.end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.close() })
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`
  const errors: unknown[] = []
  const w = new WebhookNotifier<{ x: number }>({ url, retries: 3, retryDelay: 5, body: (e) => ({ wrapped: e.x }), onError: (err) => errors.push(err) })
  w.notify({ x: 1 })
  await w.idle()
  t.equal(hits, 3, 'two 503s, then a 200')
  t.equal(w.sent, 1)
  t.equal(w.retried, 2)
  t.same(errors, [])
  t.same(JSON.parse(bodies[2]), { wrapped: 1 }, 'the body function shapes the payload')
  hits = -100 // 503 from now on
  const w2 = new WebhookNotifier<{ x: number }>({ url, retries: 1, retryDelay: 5, onError: (err) => errors.push(err) })
  w2.notify({ x: 2 })
  await w2.idle()
  t.equal(w2.failed, 1)
  t.equal(errors.length, 1, 'reported once, after the last try')
  const w3 = new WebhookNotifier<{ x: number }>({ url, retries: 0 })
  w3.notify({ x: 3 })
  await w3.idle()
  t.equal(w3.retried, 0, 'no retries by default (failover events keep their old behaviour)')
})

t.test('aggregate skips a malformed summary from another node instead of failing', async (t) => {
  const bad = { t: 0, cpu: 1, rss: 1, lag: 1, fl: 0, ev: [], u: { api: { all: 'x', tg: 'nope' }, ok: { all: counts(3, 1), m1: { ...counts(3, 1), d: 1000 }, m5: { ...counts(3, 1), d: 1000 }, tg: [tg('t', 'healthy')] } } } as unknown as NodeSummary
  const v = aggregate([{ id: 'evil', address: '', status: 'ready', configVersion: 0, lastSeen: 0, summary: bad }], 0)
  t.same(Object.keys(v.upstreams), ['ok'])
  t.equal(v.totals.totalRequests, 3)
})
