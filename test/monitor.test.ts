// Cluster monitoring and alerts end to end (issue 14): two CLI nodes on one Redis, three targets and a
// webhook receiver of the test's own. Alerts fire once per cluster, respect the cooldown, resolve, survive a
// SIGKILL of the evaluating node, and {admin}/cluster/metrics adds up to what the nodes served.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import { startHealthUpstream, type HealthUpstream } from './helpers/health-upstream.js'
import { get } from './helpers/gateway.js'
import { killAll, startCliNode, type CliNode } from './helpers/node.js'
import { until } from './helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-monitor-'))
const TOKEN = 'monitor-admin-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const HEARTBEAT = 500
const INTERVAL = 1000
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

interface Hook { status: string, rule: string, severity: string, cluster: string, startsAt: string, endsAt?: string, value: number | null, threshold: number, title: string, message: string, details: { evaluatedBy: string } }

let redis: RedisProcess
const targets: HealthUpstream[] = []
let receiver: HealthUpstream
const nodes: CliNode[] = []
t.before(async () => {
  redis = await startRedis()
  for (let i = 0; i < 3; i++) targets.push(await startHealthUpstream())
  receiver = await startHealthUpstream()
})
t.teardown(async () => {
  await killAll(nodes)
  for (const u of [...targets, receiver]) await u.close()
  await redis.stop()
})

const hooks = (): Hook[] => receiver.bodies as Hook[]
const of = (rule: string, status?: string): Hook[] => hooks().filter((h) => h.rule === rule && (status === undefined || h.status === status))

/** A CLI node of this test: three targets probed every 400 ms, alerts every INTERVAL to a webhook; `redis` false: alone. */
async function start (id: string, o: { redis?: boolean, targets?: HealthUpstream[], hook?: HealthUpstream } = {}): Promise<CliNode> {
  const { redis: shared = true, targets: ups = targets, hook = receiver } = o
  const file = join(dir, `${id}.yaml`)
  writeFileSync(file, `
node: { id: ${id}, port: 0 }
${shared ? `cluster: { name: monitor-e2e, redis: ${redis.url}, heartbeatInterval: ${HEARTBEAT}ms, snapshotPath: ${join(dir, `${id}.snap.json`)} }` : ''}
upstreams:
  api:
    targets:
${ups.map((u, i) => `      - { id: t${i + 1}, url: ${u.url} }`).join('\n')}
    healthCheck:
      active: { path: /health, interval: 400ms, timeout: 400ms, healthyThreshold: 1, unhealthyThreshold: 2 }
routes:
  - { path: /api, upstream: api }
admin: { token: ${TOKEN} }
alerts:
  interval: ${INTERVAL}ms
  alerters:
    - { type: log }
    - { type: webhook, url: ${hook.url}/hook, retries: 3, timeout: 1s }
`)
  const n = await startCliNode(file, { id })
  nodes.push(n)
  return n
}

const metrics = async (n: CliNode): Promise<any> => (await get(`${n.address}/gateway/cluster/metrics`, { headers: AUTH })).body
const alerts = async (n: CliNode): Promise<any> => (await get(`${n.address}/gateway/alerts`, { headers: AUTH })).body

async function send (n: CliNode, count: number): Promise<number> {
  let errors = 0
  for (let i = 0; i < count; i++) if ((await get(`${n.address}/api/item/${i}`)).status >= 500) errors++
  return errors
}

let a: CliNode
let b: CliNode

t.test('two nodes: {admin}/cluster/metrics totals equal the sum of what each node served', async (t) => {
  [a, b] = await Promise.all([start('mon-a'), start('mon-b')])
  await until(async () => (await metrics(a)).totals.nodes === 2 && (await metrics(b)).totals.nodes === 2, 20_000, 'both nodes in each view')
  t.equal(await send(a, 30), 0)
  t.equal(await send(b, 12), 0)
  await until(async () => (await metrics(a)).totals.totalRequests === 42 && (await metrics(b)).totals.totalRequests === 42, 10_000, 'totals include both nodes\' traffic on both')
  for (const n of [a, b]) {
    const m = await metrics(n)
    t.equal(m.totals.totalRequests, 42, `${n.id}: 30 + 12`)
    t.equal(m.totals.errorRequests, 0)
    t.equal(m.totals.errorRate, 0)
    t.same(Object.fromEntries(m.nodes.map((x: any) => [x.id, x.totalRequests])), { 'mon-a': 30, 'mon-b': 12 })
    t.equal(m.upstreams.api.totalRequests, 42)
    t.equal(m.totals.targetsTotal, 3)
    t.equal(m.totals.healthyRatio, 1)
    t.ok(m.totals.averageResponseTimeMs > 0)
    t.ok(m.totals.p99Ms > 0)
    t.equal(m.totals.windows['1m'].totalRequests, 42)
    for (const x of m.nodes) {
      t.ok(x.cpuPercent >= 0 && x.rssMb > 10 && x.eventLoopLagMs >= 0, `${x.id} publishes CPU, RSS and lag`)
      t.equal(x.configVersion, 1)
    }
  }
  const upstreamHits = targets.reduce((s, u) => s + [...u.hits].filter(([p]) => p.startsWith('/api/')).reduce((x, [, c]) => x + c, 0), 0)
  t.equal(upstreamHits, 42, 'the targets saw exactly that many requests')
  t.equal((await get(`${a.address}/gateway/cluster/metrics`)).status, 401, 'admin auth')
  t.same(of('high_error_rate'), [], 'no alert while all is well')
  t.same(of('low_healthy_instances'), [])
})

t.test('two of three targets killed: one firing for the cluster, none again within the cooldown, one resolved', async (t) => {
  const t0 = performance.now()
  await Promise.all([targets[0].kill(), targets[1].kill()])
  const ms = await until(() => of('low_healthy_instances', 'firing').length > 0, 15_000, 'the firing notification')
  t.comment(`firing notification ${Math.round(ms)} ms after the kill (interval ${INTERVAL} ms, probes every 400 ms, 2 failures)`)
  t.ok(performance.now() - t0 < 15_000)
  // several more evaluations by whichever node holds the lease, well within the 1 min cooldown
  await sleep(5 * INTERVAL)
  const firing = of('low_healthy_instances', 'firing')
  t.equal(firing.length, 1, 'exactly one firing notification for the cluster')
  t.match(firing[0], { severity: 'critical', cluster: 'monitor-e2e', threshold: 0.7, value: Number })
  t.ok(firing[0].value! < 0.7)
  const list = await alerts(b)
  t.same(list.firing.map((f: any) => f.rule), ['low_healthy_instances'], 'any node lists the firing alert')
  t.equal((await alerts(a)).evaluator, list.evaluator, 'both nodes name the same evaluator')
  await Promise.all([targets[0].restart(), targets[1].restart()])
  await until(() => of('low_healthy_instances', 'resolved').length > 0, 15_000, 'the resolved notification')
  await sleep(3 * INTERVAL)
  const resolved = of('low_healthy_instances', 'resolved')
  t.equal(resolved.length, 1, 'exactly one resolved')
  t.equal(resolved[0].startsAt, firing[0].startsAt, 'resolved names the firing it ends')
  t.ok(resolved[0].endsAt !== undefined)
  t.equal(of('low_healthy_instances', 'firing').length, 1)
  t.same((await alerts(a)).firing, [])
})

t.test('SIGKILL of the evaluating node: the other takes the lease over, neither repeating nor losing the firing alert', async (t) => {
  await Promise.all([targets[0].kill(), targets[1].kill()])
  await until(() => of('low_healthy_instances', 'firing').length === 2, 15_000, 'firing again')
  const evaluator = (await alerts(a)).evaluator as string
  const victim = evaluator === a.id ? a : b
  const survivor = victim === a ? b : a
  t.equal(of('low_healthy_instances', 'firing')[1].details.evaluatedBy, victim.id)
  const t0 = performance.now()
  await victim.kill('SIGKILL')
  const ms = await until(async () => (await alerts(survivor)).evaluator === survivor.id, 20_000, 'the survivor takes the lease over')
  t.comment(`lease taken over ${Math.round(ms)} ms after the SIGKILL (lease ${3 * INTERVAL} ms, interval ${INTERVAL} ms)`)
  await sleep(3 * INTERVAL)
  t.equal(of('low_healthy_instances', 'firing').length, 2, 'the takeover does not fire again')
  t.same((await alerts(survivor)).firing.map((f: any) => f.rule), ['low_healthy_instances'], 'nor forgets it')
  await Promise.all([targets[0].restart(), targets[1].restart()])
  await until(() => of('low_healthy_instances', 'resolved').length === 2, 15_000, 'resolved by the survivor')
  const last = of('low_healthy_instances', 'resolved')[1]
  t.equal(last.details.evaluatedBy, survivor.id)
  t.equal(last.startsAt, of('low_healthy_instances', 'firing')[1].startsAt, 'the resolve ends the firing the dead node sent')
  t.ok(performance.now() - t0 > 0)
  if (victim === a) a = survivor
  else b = survivor
})

t.test('a 5xx share over 5 % fires high_error_rate', async (t) => {
  const n = a.running ? a : b
  targets[2].traffic = 500 // one target of three answers 500: ~1/3 of requests
  const errors = await send(n, 45)
  t.ok(errors >= 10, `${errors} of 45 answered 5xx`)
  await until(() => of('high_error_rate', 'firing').length > 0, 15_000, 'high_error_rate fires')
  const h = of('high_error_rate', 'firing')[0]
  t.match(h, { severity: 'warning', threshold: 0.05, cluster: 'monitor-e2e' })
  t.ok(h.value! > 0.05, `error rate ${h.value}`)
  const m = await metrics(n)
  t.ok(m.totals.windows['1m'].errorRate > 0.05)
  t.equal(m.upstreams.api.windows['1m'].errorRequests, errors)
  targets[2].traffic = 200
  await sleep(2 * INTERVAL)
  t.equal(of('high_error_rate', 'firing').length, 1, 'no repeat within its 5 min cooldown')
})

t.test('without Redis: one node answers {admin}/cluster/metrics for itself and alerts alone', async (t) => {
  const ups = [await startHealthUpstream(), await startHealthUpstream(), await startHealthUpstream()]
  const hook = await startHealthUpstream()
  t.teardown(async () => { for (const u of [...ups, hook]) await u.close() })
  const solo = await start('mon-solo', { redis: false, targets: ups, hook })
  t.equal(await send(solo, 20), 0)
  await until(async () => (await metrics(solo)).totals.totalRequests === 20, 10_000, 'the solo node counts its 20 requests')
  const m = await metrics(solo)
  t.equal(m.totals.nodes, 1, 'one node')
  t.same(m.nodes.map((x: any) => x.id), ['mon-solo'])
  t.equal(m.totals.targetsTotal, 3)
  t.equal(m.totals.windows['5m'].totalRequests, 20, 'the 5 min window holds them too')
  // the node takes its (local) evaluator lease at its first evaluation, within one interval of boot
  await until(async () => (await alerts(solo)).evaluator === 'mon-solo', 5 * INTERVAL, 'the solo node to evaluate')
  t.equal((await alerts(solo)).evaluator, 'mon-solo', 'it evaluates the rules itself')
  await Promise.all([ups[0].kill(), ups[1].kill()])
  const bodies = (): Hook[] => (hook.bodies as Hook[]).filter((h) => h.rule === 'low_healthy_instances')
  const ms = await until(() => bodies().some((h) => h.status === 'firing'), 15_000, 'the firing notification of the solo node')
  t.comment(`solo node: firing ${Math.round(ms)} ms after the kill (interval ${INTERVAL} ms, probes every 400 ms, 2 failures)`)
  t.match(bodies()[0], { status: 'firing', severity: 'critical', cluster: String, details: { evaluatedBy: 'mon-solo' } })
  t.same((await alerts(solo)).firing.map((f: any) => f.rule), ['low_healthy_instances'])
  t.equal((await metrics(solo)).totals.healthyTargets, 1, 'one target of three left')
})
