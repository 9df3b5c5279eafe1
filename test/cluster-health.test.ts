// Cluster-shared health end to end: three gateway nodes as real CLI processes on one redis-server, two real
// upstreams. Node A ejects a failing target (passive ejection), or opens its circuit; nodes B and C, whose own
// traffic to that target succeeds, stop sending to it on A's hint. The delay is measured two ways per round:
// from A's ejection log line to B's "kept out" log line (propagation), and from A's ejection to the last
// request B or C sent to the target (stop); the figures are printed, and a generous bound is asserted.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { killAll, startCliNode, type CliNode } from './helpers/node.js'
import { until } from './helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-cluster-health-'))
const TOKEN = 'cluster-health-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const EJECTION_MS = 1000
const ROUNDS = 6
const BOUND_MS = 1000 // asserted; the goal is 100 ms (the measured figures are printed)

let redis: RedisProcess
let good: UpstreamProcess
let bad: UpstreamProcess
const nodes: CliNode[] = []
t.before(async () => {
  let ups: UpstreamProcess[]
  ;[redis, ups] = await Promise.all([startRedis(), startUpstreams(2, 'ch')])
  ;[good, bad] = ups
})
t.teardown(async () => {
  await killAll(nodes)
  await Promise.all([good, bad].map(async (u) => await u?.kill()))
  await redis?.stop()
})

function configFile (id: string): string {
  const p = join(dir, `${id}.yaml`)
  const targets = `[{ id: good, url: ${good.url} }, { id: bad, url: ${bad.url} }]`
  writeFileSync(p, `
node: { id: ${id}, port: 0 }
cluster: { name: chealth, redis: ${redis.url}, heartbeatInterval: 500ms, snapshotPath: ${join(dir, `${id}.snapshot.json`)} }
upstreams:
  api:
    targets: ${targets}
    healthCheck:
      passive: { consecutiveFailures: 3, failureStatuses: [500], baseEjectionTime: ${EJECTION_MS}ms, maxEjectionTime: ${EJECTION_MS}ms, maxEjectionPercent: 50 }
    failover: { maxRetries: 0 }
  cb:
    targets: ${targets}
    circuitBreaker: { consecutiveFailures: 3, openDuration: ${EJECTION_MS}ms, maxOpenDuration: ${EJECTION_MS}ms }
    failover: { maxRetries: 0 }
routes:
  - { path: /api, upstream: api }
  - { path: /cb, upstream: cb }
admin: { token: ${TOKEN} }
`)
  return p
}

interface LogLine { time: number, msg: string, upstream?: string, target?: string, from?: string, kind?: string, failover?: { type: string, upstream: string, target: string } }
const lines = (n: CliNode, from: number): LogLine[] => n.log.slice(from).map((l) => { try { return JSON.parse(l) as LogLine } catch { return { time: 0, msg: '' } } })

type TargetStatus = { id: string, status: string, ejected: boolean, circuit: string, hint: { from: string, kind: string, until: number } | null }
async function targetsOf (n: CliNode, upstream: string): Promise<TargetStatus[]> {
  const res = await get(`${n.address}/gateway/status`, { headers: AUTH })
  return res.body.upstreams[upstream].targets as TargetStatus[]
}

/** Sequential GETs through `n` until stopped; each send time (epoch-ms) and the upstream that answered. */
function traffic (n: CliNode, path: string): { stop: () => Promise<Array<{ at: number, id: string, status: number }>> } {
  const seen: Array<{ at: number, id: string, status: number }> = []
  let running = true
  const loop = (async () => {
    while (running) {
      const at = Date.now()
      const res = await get(`${n.address}${path}`)
      seen.push({ at, id: res.body?.id ?? '', status: res.status })
    }
  })()
  return { async stop () { running = false; await loop; return seen } }
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]
}

t.test('one node\'s ejection or open circuit keeps the target out on the others', async (t) => {
  const [a, b, c] = await Promise.all(['gw-a', 'gw-b', 'gw-c'].map(async (id) => {
    const n = await startCliNode(configFile(id), { id })
    nodes.push(n)
    return n
  }))
  // every node subscribed (its hint channel is up once it sees the others)
  await until(async () => {
    const views = await Promise.all([a, b, c].map(async (n) => (await get(`${n.address}/gateway/cluster`, { headers: AUTH })).body.nodes.length))
    return views.every((v) => v === 3)
  }, 20_000, 'three nodes see each other')

  const propagation: number[] = []
  const stops: number[] = []
  const byKind: Record<string, number[]> = { ejected: [], circuit_open: [] }

  for (const kind of ['ejected', 'circuit_open'] as const) {
    const upstream = kind === 'ejected' ? 'api' : 'cb'
    for (let round = 0; round < ROUNDS; round++) {
      const marks = [a, b, c].map((n) => n.log.length)
      // every node back to both targets eligible
      await bad.control({ status: 200 })
      await until(async () => {
        for (const n of [a, b, c]) {
          // a request per node so an expired ejection gets its trial and a half-open circuit its probe request
          await get(`${n.address}/${upstream}/status/200`)
          await get(`${n.address}/${upstream}/status/200`)
        }
        const all = await Promise.all([a, b, c].map(async (n) => await targetsOf(n, upstream)))
        return all.every((ts) => ts.every((x) => !x.ejected && x.hint === null && x.circuit === 'closed'))
      }, 15_000, `round ${round}: bad eligible everywhere`, 50)

      await bad.control({ status: 500 })
      // B and C send requests the bad target answers 200 (/status/200): only A's hint can take it out of their rotation
      const tb = traffic(b, `/${upstream}/status/200`)
      const tc = traffic(c, `/${upstream}/status/200`)
      await new Promise((resolve) => setTimeout(resolve, 50))
      // A: plain requests; bad answers 500 until A ejects it (or opens its circuit)
      let failures = 0
      let ejectedAt = 0
      for (let i = 0; i < 50 && ejectedAt === 0; i++) {
        const res = await get(`${a.address}/${upstream}/x`)
        if (res.status === 500 && ++failures === 3) ejectedAt = Date.now()
      }
      t.ok(ejectedAt > 0, `${kind} round ${round}: A saw three failures`)
      // traffic runs until B and C logged the hint (their logs come through pipes: under load a line can trail the
      // hint by a few hundred ms), then a little longer, so requests after the hint are seen; the stop bound below
      // is what holds the timing
      const hintIn = (n: CliNode, mark: number): boolean => lines(n, mark).some((l) => l.msg === 'target kept out on another node\'s hint' && l.upstream === upstream && l.target === 'bad')
      await until(() => hintIn(b, marks[1]) && hintIn(c, marks[2]), 5000, `${kind} round ${round}: B and C logged A's hint`, 20).catch(() => {})
      await new Promise((resolve) => setTimeout(resolve, 200))
      const [sb, sc] = await Promise.all([tb.stop(), tc.stop()])

      // A's own verdict, from its log: when it ejected / opened the circuit
      const aLine = lines(a, marks[0]).find((l) => kind === 'ejected'
        ? l.msg === 'target ejected' && l.upstream === upstream && l.target === 'bad'
        : l.failover?.type === 'circuit_opened' && l.failover.upstream === upstream && l.failover.target === 'bad')
      t.ok(aLine, `${kind} round ${round}: A logged its own verdict`)
      const t0 = aLine?.time ?? ejectedAt
      for (const [n, seen, mark] of [[b, sb, marks[1]], [c, sc, marks[2]]] as const) {
        const hinted = lines(n, mark).find((l) => l.msg === 'target kept out on another node\'s hint' && l.upstream === upstream && l.target === 'bad')
        t.ok(hinted, `${kind} round ${round}: ${n.id} took A's hint`)
        t.equal(hinted?.from, 'gw-a')
        t.equal(hinted?.kind, kind)
        t.notOk(lines(n, mark).some((l) => l.msg === 'target ejected' || l.failover?.type === 'circuit_opened'), `${n.id} did not eject the target on its own evidence`)
        if (hinted !== undefined) { propagation.push(hinted.time - t0); byKind[kind].push(hinted.time - t0) }
        t.ok(seen.every((s) => s.status === 200), `${n.id}: every request answered 200`)
        const toBad = seen.filter((s) => s.id === 'ch-2')
        const lastBad = toBad.length === 0 ? t0 : toBad[toBad.length - 1].at
        const stop = Math.max(0, lastBad - t0)
        stops.push(stop)
        t.ok(stop <= BOUND_MS, `${n.id} sent its last request to the bad target ${stop} ms after A's verdict (bound ${BOUND_MS} ms)`)
        const after = seen.filter((s) => s.at > (hinted?.time ?? t0 + BOUND_MS))
        t.ok(after.length > 0 && after.every((s) => s.id === 'ch-1'), `${n.id}: every request sent after the hint went to the good target (${after.length} requests)`)
        if (round === ROUNDS - 1) {
          const st = (await targetsOf(n, upstream)).find((x) => x.id === 'bad')
          t.ok(st?.hint === null || st?.hint?.from === 'gw-a', 'the status route shows the hint while it lasts')
        }
      }
    }
  }

  const load = (await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')
  const fig = `shared ejection over ${propagation.length} node-rounds (2 kinds x ${ROUNDS} rounds x 2 receivers): ` +
    `propagation (A's verdict -> B's hint applied, log clocks) p50 ${pct(propagation, 50)} ms, max ${Math.max(...propagation)} ms; ` +
    `stop (A's verdict -> last request the receiver sent to the target) p50 ${pct(stops, 50)} ms, max ${Math.max(...stops)} ms; ` +
    Object.entries(byKind).map(([k, xs]) => `${k}: p50 ${pct(xs, 50)} ms max ${Math.max(...xs)} ms [${[...xs].sort((x, y) => x - y).join(' ')}]`).join('; ') +
    `; load ${load}`
  t.comment(fig)
  console.log(`# ${fig}`)

  // metrics: A sent hints, B received and applied them
  const ma = (await get(`${a.address}/metrics`)).text
  const mb = (await get(`${b.address}/metrics`)).text
  t.match(ma, /health_hints_sent_total\{kind="ejected"\} [1-9]/)
  t.match(ma, /health_hints_sent_total\{kind="circuit_open"\} [1-9]/)
  t.match(mb, /health_hints_received_total\{kind="ejected",outcome="applied"\} [1-9]/)
})

t.test('healthCheck options changed by a config PUT apply at run time on every node', async (t) => {
  const [a, b, c] = nodes
  const config = async (): Promise<{ version: number, config: { upstreams: Record<string, { healthCheck?: Record<string, unknown> }> } }> =>
    (await get(`${a.address}/gateway/config`, { headers: AUTH })).body
  const put = async (body: unknown, version: number): Promise<number> => (await get(`${a.address}/gateway/config`, {
    method: 'PUT', headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(version) }, body: JSON.stringify(body),
  })).status
  const statusOf = async (n: CliNode): Promise<string | undefined> => (await targetsOf(n, 'api')).find((x) => x.id === 'bad')?.status

  await bad.control({ status: 200, healthStatus: 503 })
  t.same(await Promise.all([a, b, c].map(statusOf)), ['healthy', 'healthy', 'healthy'], 'no active probes at boot: taken as healthy')

  // add active probes: the bad target's /health answers 503, so every node turns it unhealthy
  let doc = await config()
  doc.config.upstreams.api.healthCheck = { ...doc.config.upstreams.api.healthCheck, active: { type: 'http', path: '/health', interval: '200ms', timeout: '150ms', unhealthyThreshold: 1, healthyThreshold: 1 } }
  t.equal(await put(doc.config, doc.version), 200)
  const ms = await until(async () => (await Promise.all([a, b, c].map(statusOf))).every((s) => s === 'unhealthy'), 10_000, 'bad unhealthy on every node', 50)
  t.pass(`the new probes ran on every node (${Math.round(ms)} ms)`)
  const checks = (await bad.stats()).healthChecks
  t.ok(checks > 0, `the bad target was probed (${checks} probes)`)

  // change them again (another path, which the demo upstream answers 200): the checkers restart with it
  doc = await config()
  doc.config.upstreams.api.healthCheck!.active = { type: 'http', path: '/ok', interval: '200ms', timeout: '150ms', unhealthyThreshold: 1, healthyThreshold: 1 }
  t.equal(await put(doc.config, doc.version), 200)
  await until(async () => (await Promise.all([a, b, c].map(statusOf))).every((s) => s === 'healthy'), 10_000, 'bad healthy again on every node', 50)
  t.pass('a changed probe path applies on every node')

  // and removing them stops probing
  doc = await config()
  delete doc.config.upstreams.api.healthCheck!.active
  t.equal(await put(doc.config, doc.version), 200)
  await new Promise((resolve) => setTimeout(resolve, 500))
  const before = (await bad.stats()).healthChecks
  await new Promise((resolve) => setTimeout(resolve, 800))
  t.equal((await bad.stats()).healthChecks, before, 'no probe after the active checks were removed')
  await bad.control({ healthStatus: 200 })
})

t.test('shared probing: one node probes per interval and the others take its results; a dead holder is replaced', async (t) => {
  const [a, b, c] = nodes
  const put = async (active: Record<string, unknown> | undefined): Promise<void> => {
    const doc = (await get(`${a.address}/gateway/config`, { headers: AUTH })).body
    if (active === undefined) delete doc.config.upstreams.api.healthCheck.active
    else doc.config.upstreams.api.healthCheck.active = active
    const res = await get(`${a.address}/gateway/config`, {
      method: 'PUT', headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(doc.version) }, body: JSON.stringify(doc.config),
    })
    t.equal(res.status, 200, 'config PUT accepted')
  }
  const probesOn = async (u: UpstreamProcess, ms: number): Promise<number> => {
    const before = (await u.stats()).healthChecks
    await new Promise((resolve) => setTimeout(resolve, ms))
    return (await u.stats()).healthChecks - before
  }
  const active = { type: 'http', path: '/health', interval: '200ms', timeout: '150ms', healthyThreshold: 1, unhealthyThreshold: 1 }
  await bad.control({ status: 200, healthStatus: 200 })

  // alternate rounds, shared and not, three nodes each time
  const shared: number[] = []
  const alone: number[] = []
  for (let round = 0; round < 2; round++) {
    await put({ ...active, shared: true })
    await new Promise((resolve) => setTimeout(resolve, 800)) // the lease settles (first probes run everywhere)
    shared.push(await probesOn(good, 2000))
    await put({ ...active, shared: false })
    await new Promise((resolve) => setTimeout(resolve, 800))
    alone.push(await probesOn(good, 2000))
  }
  const sum = (xs: number[]): number => xs.reduce((x, y) => x + y, 0)
  const fig = `probes of one target in 2 x 2 s, 3 nodes, interval 200 ms: shared ${shared.join('+')} = ${sum(shared)}, each node alone ${alone.join('+')} = ${sum(alone)} (ratio ${(sum(alone) / Math.max(1, sum(shared))).toFixed(2)})`
  t.comment(fig)
  console.log(`# ${fig}`)
  t.ok(sum(shared) * 2 < sum(alone), 'shared probing does not multiply probes by the node count')

  // the holder's verdict reaches every node: bad's /health fails, every node turns it unhealthy
  await put({ ...active, shared: true })
  await new Promise((resolve) => setTimeout(resolve, 800))
  await bad.control({ healthStatus: 503 })
  const statusOf = async (n: CliNode): Promise<string | undefined> => (await targetsOf(n, 'api')).find((x) => x.id === 'bad')?.status
  await until(async () => (await Promise.all([a, b, c].map(statusOf))).every((s) => s === 'unhealthy'), 10_000, 'bad unhealthy everywhere', 50)
  t.pass('every node turned the target unhealthy on the shared results')
  const holderLines = (n: CliNode): LogLine[] => lines(n, 0).filter((l) => l.msg === 'shared probing: the lease holder probes this upstream' && l.upstream === 'api')
  const lastHolder = (holderLines(a).at(-1) as { holder?: string } | undefined)?.holder
  t.ok(lastHolder !== undefined, `the log names the holder (${lastHolder})`)
  await bad.control({ healthStatus: 200 })
  await until(async () => (await Promise.all([a, b, c].map(statusOf))).every((s) => s === 'healthy'), 10_000, 'bad healthy everywhere', 50)

  // SIGKILL the holder: its lease lapses (3 intervals) and another node probes
  const holder = [a, b, c].find((n) => n.id === lastHolder)
  if (holder === undefined) return
  const killedAt = Date.now()
  await holder.kill('SIGKILL')
  const rest = [a, b, c].filter((n) => n !== holder)
  const takeover = (): LogLine | undefined => rest.flatMap((n) => holderLines(n).filter((l) => (l as { holder?: string }).holder === n.id && l.time >= killedAt))[0]
  await until(() => takeover() !== undefined, 10_000, 'another node takes the lease', 50)
  const took = takeover()!.time - killedAt
  t.pass(`a surviving node took over probing ${took} ms after the holder died (lease ttl 600 ms + one interval)`)
  console.log(`# shared probing: holder SIGKILLed -> lease taken by a survivor after ${took} ms (interval 200 ms, lease ttl 600 ms)`)
  t.ok(await probesOn(good, 1000) > 0, 'probes go on')
  await bad.control({ healthStatus: 503 })
  await until(async () => (await Promise.all(rest.map(statusOf))).every((s) => s === 'unhealthy'), 10_000, 'bad unhealthy on the survivors', 50)
  t.pass('the survivors still share verdicts')
  await bad.control({ healthStatus: 200 })
})
