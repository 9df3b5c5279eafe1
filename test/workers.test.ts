// node.workers: 2 through the real CLI: two worker processes behind one port that behave as one node.
// One node serves every subtest (a worker boot is slow on a loaded machine); the SIGTERM drain comes last.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, Client, request } from 'undici'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { get, client } from './helpers/gateway.js'
import { startCliNode, type CliNode } from './helpers/node.js'
import { until as poll } from './helpers/poll.js'
import { startRedis } from './helpers/redis.js'
import { startNode } from '../plugins/gateway.js'
import { validateConfig } from '../lib/config/index.js'

t.setTimeout(600_000) // three worker processes and three upstreams compiled by tsx: minutes on a busy machine
const dir = mkdtempSync(join(tmpdir(), 'fhg-workers-'))
const TOKEN = 'workers-test-admin-token'
const auth = { headers: { authorization: `Bearer ${TOKEN}` } }
// the primary hands each connection to the next worker: requests go with `Connection: close` (a fresh one each),
// and a connection lost in transit to a killed worker fails in seconds, not undici's default 300 s
const fresh = new Agent({ connections: 64, headersTimeout: 10_000, bodyTimeout: 10_000 })
/** Poll `fn` until true (helpers/poll.ts, the label first). */
const until = async (what: string, fn: () => boolean | Promise<boolean>, ms = 10_000, every = 20): Promise<number> => await poll(fn, ms, what, every)
/** Bodies of unexpected answers, for the failure messages. */
const odd: string[] = []

let ups: UpstreamProcess[]
let node: CliNode
/** The alerts the node's webhook alerter POSTed (a receiver of the test's own). */
const hooks: Array<{ rule: string, status: string, details?: { evaluatedBy?: string } }> = []
const receiver = createServer((req, res) => {
  let body = ''
  req.on('data', (c: Buffer) => { body += c.toString() })
  req.on('end', () => {
    try { hooks.push(JSON.parse(body)) } catch {}
    res.end('ok')
  })
})
t.before(async () => {
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve))
  ups = await startUpstreams(3, 'w')
  const file = join(dir, 'workers.yaml')
  writeFileSync(file, `
node: { id: gw-workers, port: 0, workers: 2 }
upstreams:
  api: # unhealthyThreshold 5: a probe that times out while a replacement worker boots (CPU bound) is no verdict
    targets: [{ id: api-1, url: ${ups[0].url} }]
    healthCheck: { active: { type: http, path: /health, interval: 200ms, timeout: 150ms, healthyThreshold: 1, unhealthyThreshold: 5, jitter: 0 } }
  flaky:
    targets: [{ id: f-1, url: ${ups[1].url} }, { id: f-2, url: ${ups[2].url} }]
    healthCheck: { passive: { consecutiveFailures: 1, baseEjectionTime: 60s, maxEjectionPercent: 50 } }
    failover: { maxRetries: 0 }
routes:
  - { path: /limited, upstream: api, rateLimit: { algorithm: fixed_window, limit: 50, window: 60s, key: route } }
  - { path: /api, upstream: api }
  - { path: /flaky, upstream: flaky }
admin: { token: ${TOKEN} }
drain: { delay: 100ms, timeout: 10s }
alerts:
  interval: 300ms
  rules: [{ name: node-up, when: 'nodes >= 1', severity: warning, cooldown: 10m }]
  alerters: [{ type: webhook, url: 'http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook', timeout: 2s }]
`)
  node = await startCliNode(file, { id: 'gw-workers', timeout: 90_000 })
  // both workers listen (the primary logs it once every worker is ready)
  await until('every worker listens', () => node.log.some((l) => l.includes('every worker listens')), 60_000)
})
t.teardown(async () => {
  await node?.kill('SIGKILL')
  await fresh.close()
  receiver.close()
  await Promise.all(ups.map(async (u) => await u.kill()))
})

interface Status { node: { id: string, pid: number }, configVersion: number, workers: Array<{ slot: number, pid: number, uptimeSeconds: number, inFlight: number }>, workersReplaced: number, upstreams: any }
const status = async (): Promise<Status> => {
  const r = await get(`${node.address}/gateway/status`, { ...auth, dispatcher: fresh, reset: true })
  if (r.status !== 200) throw new Error(`status ${r.status}: ${r.text}`)
  return r.body as Status
}
/** Status answers until every worker (by pid) has answered one that passes `ok`; rejects after `ms`. */
async function everyWorker (what: string, ok: (s: Status) => boolean, ms = 10_000): Promise<number> {
  const pids = new Set((await status()).workers.map((w) => w.pid))
  const passed = new Set<number>()
  return await until(what, async () => {
    const s = await status()
    if (ok(s)) passed.add(s.node.pid)
    return [...pids].every((p) => passed.has(p))
  }, ms, 5)
}
async function sendAll (path: string, n: number, concurrency = 10): Promise<number[]> {
  const codes: number[] = []
  let next = 0
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) {
      next++
      const r = await request(`${node.address}${path}`, { dispatcher: fresh, reset: true }).catch((err: Error) => err)
      if (r instanceof Error) { codes.push(0); odd.push(r.message); continue }
      const text = await r.body.text()
      if (r.statusCode !== 200 && r.statusCode !== 429) odd.push(`${r.statusCode} ${text.slice(0, 200)}`)
      codes.push(r.statusCode)
    }
  }))
  return codes
}

t.test('status lists both workers (pid, uptime, in flight) of one node, and both serve', async (t) => {
  const s = await status()
  t.equal(s.node.id, 'gw-workers')
  t.equal(s.workers.length, 2, 'two workers')
  t.same(s.workers.map((w) => w.slot), [1, 2])
  for (const w of s.workers) {
    t.ok(w.pid > 0 && w.pid !== node.child.pid, 'a worker pid, not the primary')
    t.type(w.uptimeSeconds, 'number')
    t.equal(w.inFlight, 0)
  }
  t.equal(s.workersReplaced, 0)
  await everyWorker('a status answer from each worker', () => true)
  t.pass('each worker answered a status request')
})

t.test('an exact limit of 50 holds across both workers without Redis: 50 of 300 pass', async (t) => {
  odd.length = 0
  const codes = await sendAll('/limited/x', 300)
  const storeLines = node.log.filter((l) => /store|degraded/i.test(l)).slice(0, 3).join('\n')
  t.equal(codes.filter((c) => c === 200).length, 50, `exactly 50 allowed ${odd.join('; ')} ${storeLines}`)
  t.equal(codes.filter((c) => c === 429).length, 250, 'the rest refused')
})

t.test('one /metrics scrape answers for the whole node: counts sum across workers', async (t) => {
  const codes = await sendAll('/api/m', 40)
  t.equal(codes.filter((c) => c === 200).length, 40)
  const count = async (): Promise<{ api: number, limited: number }> => {
    const r = await get(`${node.address}/metrics`, { dispatcher: fresh, reset: true })
    const sum = (route: string): number => r.text.split('\n')
      .filter((l) => l.startsWith('proxy_requests_total{') && l.includes(`route="${route}"`))
      .reduce((n, l) => n + Number(l.split(' ').pop()), 0)
    return { api: sum('/api'), limited: sum('/limited') }
  }
  for (let i = 0; i < 4; i++) {
    const c = await count()
    t.equal(c.api, 40, `scrape ${i + 1}: the 40 /api requests of both workers`)
    t.equal(c.limited, 50, `scrape ${i + 1}: the 50 allowed /limited requests`)
  }
})

t.test('alerts are evaluated once per node, on the node\'s figures: one webhook per firing, not one per worker', async (t) => {
  await until('the rule fires', () => hooks.some((h) => h.rule === 'node-up'), 20_000)
  // ten more evaluation intervals: a second evaluator would have fired by now
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const fired = hooks.filter((h) => h.rule === 'node-up')
  t.equal(fired.length, 1, `one webhook for the firing, not two (${JSON.stringify(fired)})`)
  t.equal(fired[0].status, 'firing')
  for (let i = 0; i < 4; i++) {
    const r = await get(`${node.address}/gateway/alerts`, { ...auth, dispatcher: fresh, reset: true })
    t.same(r.body.firing.map((f: { rule: string }) => f.rule), ['node-up'], `answer ${i + 1}: the node's firing rule, whichever worker answers`)
    t.equal(r.body.recent.length, 1, 'and its one notification')
  }
  // the figures the rules read are the node's: {admin}/cluster/metrics counts what both workers served
  const a = await connectionToWorker()
  const b = await connectionToWorker(a.pid)
  t.teardown(async () => { await a.c.close(); await b.c.close() })
  const scraped = (await get(`${node.address}/metrics`, { dispatcher: fresh, reset: true })).text.split('\n')
    .filter((l) => l.startsWith('proxy_requests_total{') && l.includes('upstream="api"'))
    .reduce((n, l) => n + Number(l.split(' ').pop()), 0)
  for (const w of [a, b]) {
    const r = await w.c.request({ method: 'GET', path: '/gateway/cluster/metrics', headers: auth.headers })
    const v = await r.body.json() as { upstreams: { api: { totalRequests: number } } }
    t.equal(v.upstreams.api.totalRequests, scraped, `worker ${w.pid}: the node's ${scraped} requests to api`)
  }
})

t.test('active probes run once per node, not once per worker', async (t) => {
  const before = (await ups[0].stats()).healthChecks
  const t0 = performance.now()
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const probes = (await ups[0].stats()).healthChecks - before
  const intervals = (performance.now() - t0) / 200
  t.comment(`${probes} probes in ${intervals.toFixed(1)} intervals of 200 ms`)
  t.ok(probes >= intervals * 0.4, `probes run (${probes})`)
  t.ok(probes <= intervals * 1.3, `one worker's worth (${probes} <= ${(intervals * 1.3).toFixed(1)}), not two`)
})

t.test('an ejection in one worker keeps the target out in the other within a few ms', async (t) => {
  const r = await get(`${node.address}/flaky/status/503`, { dispatcher: fresh, reset: true })
  t.equal(r.status, 503, 'the upstream failed once: ejected in the worker that saw it')
  const ejected = (s: Status): boolean => (s.upstreams.flaky.targets as Array<{ ejected?: boolean }>).some((x) => x.ejected === true)
  await everyWorker('both workers keep the target out', ejected)
  t.pass('both workers show the target ejected')
  // the two log lines, by the workers' own clocks (one host): ejected in one, hinted in the other
  const lines = node.log.map((l) => { try { return JSON.parse(l) as { msg?: string, time: number, pid: number } } catch { return undefined } })
  const ej = lines.find((l) => l?.msg === 'target ejected')
  const hinted = lines.find((l) => l?.msg === 'target kept out on another node\'s hint')
  t.ok(ej !== undefined && hinted !== undefined, 'an ejection line and a hint line')
  if (ej !== undefined && hinted !== undefined) {
    t.not(ej.pid, hinted.pid, 'in two workers')
    const ms = hinted.time - ej.time
    t.comment(`ejection seen by the other worker after ${ms} ms`)
    t.ok(ms >= 0 && ms < 250, `within a few ms (${ms} ms; < 250 ms on a loaded machine)`)
  }
})

t.test('a config PUT reaches both workers', async (t) => {
  const cur = await get(`${node.address}/gateway/config`, auth)
  t.equal(cur.status, 200)
  const version = cur.body.version as number
  const config = cur.body.config as { routes: unknown[] }
  const next = { ...config, routes: [...config.routes, { path: '/added', upstream: 'api' }] }
  const put = await get(`${node.address}/gateway/config`, { method: 'PUT', headers: { ...auth.headers, 'content-type': 'application/json', 'if-match': String(version) }, body: JSON.stringify(next) })
  t.equal(put.status, 200, put.text)
  await everyWorker('both workers run the new version', (s) => s.configVersion === version + 1)
  t.pass(`both workers run version ${version + 1}`)
  const codes = await sendAll('/added/y', 10)
  t.same(codes, Array(10).fill(200), 'the new route serves on every worker')
})

/** A keep-alive connection to one worker, found by asking its status on fresh connections until `not` is not the pid. */
async function connectionToWorker (not?: number, address = node.address): Promise<{ c: Client, pid: number }> {
  for (let i = 0; i < 20; i++) {
    const c = new Client(address, { pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: 10_000, bodyTimeout: 10_000 })
    const r = await c.request({ method: 'GET', path: '/gateway/status', headers: auth.headers })
    const pid = ((await r.body.json()) as Status).node.pid
    if (pid !== not) return { c, pid }
    await c.close()
  }
  throw new Error('no connection reached another worker')
}

t.test('two PUTs with the same If-Match on two workers at once: exactly one 200 and one 409; every worker runs the winner', async (t) => {
  const a = await connectionToWorker()
  const b = await connectionToWorker(a.pid)
  t.teardown(async () => { await a.c.close(); await b.c.close() })
  t.not(a.pid, b.pid, 'two connections, two workers')
  const cur = await get(`${node.address}/gateway/config`, { ...auth, dispatcher: fresh, reset: true })
  const version = cur.body.version as number
  const config = cur.body.config as { routes: unknown[] }
  const put = async (w: { c: Client }, name: string): Promise<{ name: string, status: number, body: any }> => {
    const next = { ...config, routes: [...config.routes, { path: `/${name}`, upstream: 'api' }] }
    const r = await w.c.request({ method: 'PUT', path: '/gateway/config', headers: { ...auth.headers, 'content-type': 'application/json', 'if-match': String(version) }, body: JSON.stringify(next) })
    return { name, status: r.statusCode, body: await r.body.json() }
  }
  const answers = await Promise.all([put(a, 'race-a'), put(b, 'race-b')])
  t.same(answers.map((x) => x.status).sort(), [200, 409], `one accepted, one stale: ${JSON.stringify(answers)}`)
  const won = answers.find((x) => x.status === 200)!
  const lost = answers.find((x) => x.status === 409)!
  t.same(won.body, { version: version + 1 })
  t.equal(lost.body.code, 'FHG_ERR_CONFIG_CONFLICT')
  t.equal(lost.body.currentVersion, version + 1, 'the 409 names the winner\'s version')
  await everyWorker('both workers run the winner\'s version', (s) => s.configVersion === version + 1)
  t.pass(`both workers run version ${version + 1}`)
  const g = await get(`${node.address}/gateway/config`, { ...auth, dispatcher: fresh, reset: true })
  t.equal(g.body.version, version + 1)
  t.same(await sendAll(`/${won.name}/z`, 10), Array(10).fill(200), 'the winner\'s route serves on every worker')
  t.same(await sendAll(`/${lost.name}/z`, 10), Array(10).fill(404), 'the loser\'s route on none')
})

t.test('a killed worker is replaced and traffic keeps flowing', async (t) => {
  odd.length = 0
  const before = await status()
  const victim = before.workers[1].pid
  process.kill(victim, 'SIGKILL')
  // traffic all along, on fresh connections, while the status is polled for the replacement
  const codes: number[] = []
  let replaced: Status | undefined
  let stop = false
  const traffic = Promise.all(Array.from({ length: 4 }, async () => {
    while (!stop) codes.push(...await sendAll('/api/k', 1, 1))
  }))
  try {
    await until('a replacement worker', async () => {
      const s = await status().catch(() => undefined)
      if (s !== undefined && s.workers.length === 2 && !s.workers.some((w) => w.pid === victim)) replaced = s
      return replaced !== undefined
    }, 60_000, 50)
  } finally {
    stop = true
    await traffic
  }
  t.equal(replaced?.workersReplaced, 1, 'counted')
  t.ok(node.log.some((l) => l.includes('worker died: starting a replacement')), 'logged')
  const ok = codes.filter((c) => c === 200).length
  t.comment(`${ok} of ${codes.length} requests answered 200 while the worker was replaced`)
  t.ok(ok >= 10, 'traffic kept flowing while the worker was replaced')
  t.ok(codes.length - ok <= 4, `at most the connections in transit to the dead worker failed (${odd.join('; ')})`)
  odd.length = 0
  const after = await sendAll('/api/k2', 40)
  t.same(after, Array(40).fill(200), `every request after the replacement ${odd.join('; ')}`)
  await everyWorker('the replacement runs the node\'s config version, not its file', (s) => s.configVersion === before.configVersion)
  t.pass(`every worker runs version ${before.configVersion}`)
})

t.test('SIGTERM drains every worker and exits 0', async (t) => {
  const slow = request(`${node.address}/api/slow/800`, { reset: true, dispatcher: client })
    .then(async (r) => ({ status: r.statusCode, body: await r.body.json() as { url: string } }))
  await until('the slow request in flight', async () => (await status()).workers.some((w) => w.inFlight === 1))
  node.child.kill('SIGTERM')
  const done = await slow
  t.equal(done.status, 200, 'the request in flight completes')
  const { code, signal } = await node.exit
  t.equal(signal, null)
  t.equal(code, 0, 'the primary exits 0 once every worker drained')
  t.equal(node.log.filter((l) => l.includes('shutting down: draining"')).length, 2, 'both workers drained')
})

t.test('with Redis: the cluster sees one member for the node, limits go to Redis, exact, and while Redis is down the node admits its local share once', async (t) => {
  const redis = await startRedis()
  t.teardown(async () => { await redis.stop() })
  const file = join(dir, 'workers-redis.yaml')
  writeFileSync(file, `
node: { id: gw-workers-redis, port: 0, workers: 2 }
cluster: { name: workers-redis, redis: ${redis.url}, heartbeatInterval: 500ms }
upstreams:
  api: { targets: [{ id: api-1, url: ${ups[0].url} }] }
routes:
  - { path: /limited, upstream: api, rateLimit: { algorithm: fixed_window, limit: 30, window: 60s, key: route } }
  - { path: /fallback, upstream: api, rateLimit: { algorithm: fixed_window, limit: 20, window: 60s, key: route } }
rateLimit: { onStoreError: local }
admin: { token: ${TOKEN} }
drain: { delay: 0ms, timeout: 5s }
`)
  const rnode = await startCliNode(file, { id: 'gw-workers-redis', timeout: 90_000 })
  t.teardown(async () => { await rnode.kill('SIGKILL') })
  await until('every worker listens', () => rnode.log.some((l) => l.includes('every worker listens')), 60_000)
  t.ok(rnode.log.some((l) => l.includes('"limits":"redis"')), 'the primary holds no counters')
  const nodes = new Set<string>()
  await until('a heartbeat of the node', async () => {
    const c = await get(`${rnode.address}/gateway/cluster`, { ...auth, dispatcher: fresh, reset: true })
    for (const n of (c.body?.nodes ?? []) as Array<{ id: string }>) nodes.add(n.id)
    return c.status === 200 && (c.body.nodes as unknown[]).length >= 1
  }, 20_000)
  for (let i = 0; i < 6; i++) {
    const c = await get(`${rnode.address}/gateway/cluster`, { ...auth, dispatcher: fresh, reset: true })
    t.equal((c.body.nodes as unknown[]).length, 1, `answer ${i + 1}: one member`)
    for (const n of c.body.nodes as Array<{ id: string }>) nodes.add(n.id)
  }
  t.same([...nodes], ['gw-workers-redis'], 'the node\'s id, whichever worker heartbeats')
  const codes: number[] = []
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (codes.length < 100) {
      const r = await request(`${rnode.address}/limited/r`, { dispatcher: fresh, reset: true })
      await r.body.dump()
      codes.push(r.statusCode)
    }
  }))
  t.equal(codes.filter((c) => c === 200).length, 30, 'exactly 30 allowed, counted in Redis')

  // another node of the cluster sees this node's figures through its heartbeat: both workers' traffic, not one's
  const observer = await startNode(validateConfig({
    node: { id: 'observer', host: '127.0.0.1', port: 0 },
    cluster: { name: 'workers-redis', redis: redis.url, heartbeatInterval: 500 },
    upstreams: { api: { targets: [{ id: 'api-1', url: ups[0].url }] } },
    routes: [],
    admin: { token: TOKEN },
  }))
  let own = -1
  let seen = -2
  await until('the observer sees the node\'s own count', async () => {
    const mine = await get(`${rnode.address}/gateway/cluster/metrics`, { ...auth, dispatcher: fresh, reset: true })
    own = (mine.body.nodes as Array<{ id: string, totalRequests: number }>).find((n) => n.id === 'gw-workers-redis')?.totalRequests ?? -1
    const theirs = await get(`${observer.address}/gateway/cluster/metrics`, auth)
    seen = (theirs.body.nodes as Array<{ id: string, totalRequests: number }>).find((n) => n.id === 'gw-workers-redis')?.totalRequests ?? -2
    return own === 30 && seen === own
  }, 10_000).catch(() => {})
  await observer.close()
  // the share of policy local is limit ÷ the live nodes a worker saw at the outage: wait until the observer's leave
  // reached both workers' views (asked on a connection to each), or a worker that handles the dead store before the
  // leave message would take 20 ÷ 2
  const wa = await connectionToWorker(undefined, rnode.address)
  const wb = await connectionToWorker(wa.pid, rnode.address)
  for (const w of [wa, wb]) {
    await until(`worker ${w.pid} saw the observer leave`, async () => {
      const r = await w.c.request({ method: 'GET', path: '/gateway/cluster', headers: auth.headers })
      return ((await r.body.json()) as { nodes: unknown[] }).nodes.length === 1
    }, 10_000)
    await w.c.close()
  }
  t.equal(own, 30, 'the node counts the 30 requests both workers proxied')
  t.equal(seen, own, 'the other node sees the same count in the heartbeat (every worker\'s, merged)')

  // Redis dies: policy local decides on the primary's fallback counters, limit ÷ 1 live node, once for both workers
  await redis.kill('SIGKILL')
  const local: number[] = []
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (local.length < 120) {
      const r = await request(`${rnode.address}/fallback/r`, { dispatcher: fresh, reset: true })
      await r.body.dump()
      local.push(r.statusCode)
    }
  }))
  t.equal(local.filter((c) => c === 200).length, 20, `exactly 20 of ${local.length} allowed across both workers while Redis is down`)
  t.equal(local.filter((c) => c === 429).length, local.length - 20, 'the rest refused')
  const degraded = new Set(rnode.log.filter((l) => l.includes('applying onStoreError policy')).map((l) => (JSON.parse(l) as { pid: number }).pid))
  t.equal(degraded.size, 2, 'both workers decided by the policy (two pids)')
  rnode.child.kill('SIGTERM')
  t.equal((await rnode.exit).code, 0, 'drains and exits 0')
})
