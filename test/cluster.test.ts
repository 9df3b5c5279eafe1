// Cluster mode end to end: gateway nodes as real CLI processes on one real redis-server, real upstreams.
// Membership (join, SIGKILL, graceful leave), config sync by PUT with If-Match (propagation measured over
// 30 changes, stale 409, invalid 400, boot-only keys), and a node booted while Redis is down (file, snapshot, join).
import t from 'tap'
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { startRedis, type RedisProcess } from './helpers/redis.js'
import type { UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { startCliNode, startClusterFixture, type CliNode } from './helpers/node.js'
import { until } from './helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-cluster-'))
const TOKEN = 'cluster-admin-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const HEARTBEAT = 500 // ms; TTL = 1500 ms

let redis: RedisProcess
let ups: UpstreamProcess[]
const nodes: GatewayNode[] = []
t.before(async () => { ({ redis, ups } = await startClusterFixture(t, 3, 'k', nodes)) })

type GatewayNode = CliNode

function configFile (id: string, redisUrl: string, targetUrl: string, cluster = 'ct'): string {
  const p = join(dir, `${id}.yaml`)
  writeFileSync(p, `
node: { id: ${id}, port: 0 }
cluster: { name: ${cluster}, redis: ${redisUrl}, heartbeatInterval: ${HEARTBEAT}ms, snapshotPath: ${join(dir, `${id}.snapshot.json`)} }
upstreams:
  api:
    strategy: weighted_round_robin
    targets:
      - { id: first, url: ${targetUrl} }
routes:
  - { path: /api, upstream: api }
admin: { token: ${TOKEN} }
`)
  return p
}

/** `start --config file`; resolves once the node listens (killed at teardown). */
async function start (id: string, file: string): Promise<GatewayNode> {
  const node = await startCliNode(file, { id })
  nodes.push(node)
  return node
}

async function kill (node: GatewayNode, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  await node.kill(signal)
}

const view = async (n: GatewayNode): Promise<{ redis: string, nodes: Array<{ id: string, configVersion: number, status: string, address: string }> }> =>
  (await get(`${n.address}/gateway/cluster`, { headers: AUTH })).body
const ids = async (n: GatewayNode): Promise<string[]> => (await view(n)).nodes.map((x) => x.id).sort()
const status = async (n: GatewayNode): Promise<{ configVersion: number }> => (await get(`${n.address}/gateway/status`, { headers: AUTH })).body
const whoAnswers = async (n: GatewayNode): Promise<string> => (await get(`${n.address}/api/x`)).body.id

async function putConfig (n: GatewayNode, body: unknown, ifMatch?: string | number): Promise<Awaited<ReturnType<typeof get>>> {
  const headers: Record<string, string> = { ...AUTH, 'content-type': 'application/json' }
  if (ifMatch !== undefined) headers['if-match'] = String(ifMatch)
  return await get(`${n.address}/gateway/config`, { method: 'PUT', headers, body: JSON.stringify(body) })
}

const shared = (targets: Array<{ id: string, url: string, weight?: number }>): unknown => ({
  upstreams: { api: { strategy: 'weighted_round_robin', targets } },
  routes: [{ path: '/api', upstream: 'api' }],
})

t.test('three nodes on one Redis: membership, config sync, conflicts, leaves', async (t) => {
  const [a, b, c] = await Promise.all(['gw-a', 'gw-b', 'gw-c'].map(async (id) => await start(id, configFile(id, redis.url, ups[0].url))))

  await until(async () => (await Promise.all([a, b, c].map(ids))).every((l) => l.join() === 'gw-a,gw-b,gw-c'), 10_000, 'every node sees three')
  t.pass('each of three nodes lists all three in /cluster')
  const v0 = await view(a)
  t.equal(v0.redis, 'up')
  t.ok(v0.nodes.every((n) => n.status === 'ready' && /^127\.0\.0\.1:\d+$/.test(n.address)), 'entries carry address and status')

  // the first node's file seeded the store; everyone applies version 1
  const got = await get(`${a.address}/gateway/config`, { headers: AUTH })
  t.equal(got.status, 200)
  t.equal(got.body.version, 1, 'the file seeded an empty store as version 1')
  t.equal(got.headers.etag, '"1"')
  t.same(Object.keys(got.body.config).sort(), ['routes', 'upstreams'], 'only the shared part is stored')
  await until(async () => (await view(a)).nodes.every((n) => n.configVersion === 1), 10_000, 'configVersion 1 everywhere')

  await t.test('a PUT on A reaches B within 1 s and B routes by it (30 changes)', async (t) => {
    let version = 1
    const lat: number[] = []
    const putMs: number[] = []
    const sentAt = new Map<number, number>() // version -> epoch-ms its PUT was sent
    for (let i = 0; i < 30; i++) {
      const up = ups[(i + 1) % 2]
      const wall = Date.now()
      const t0 = performance.now()
      const res = await putConfig(a, shared([{ id: `t${i}`, url: up.url, weight: 1 + (i % 3) }]), version)
      putMs.push(performance.now() - t0)
      t.equal(res.status, 200, `PUT ${i} accepted`)
      version = res.body.version
      sentAt.set(version, wall)
      await until(async () => (await status(b)).configVersion === version, 5000, `B at version ${version}`, 2)
      lat.push(performance.now() - t0)
      if (i % 5 === 0 || i === 29) t.equal(await whoAnswers(b), up.id, `B routes change ${i} to ${up.id}`)
    }
    // when B applied each version, by its own log line (one clock: same machine); polling B adds its own delay
    const appliedOnB = new Map<number, number>()
    for (const line of b.log) {
      if (!line.includes('shared config applied')) continue
      const o = JSON.parse(line) as { version: number, time: number }
      appliedOnB.set(o.version, o.time)
    }
    const applied = [...sentAt].map(([v, at]) => (appliedOnB.get(v) ?? Infinity) - at)
    const pct = (xs: number[], p: number): number => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.ceil(xs.length * p) - 1)]
    t.comment(`PUT sent to A -> applied on B (B's log), 30 changes: p50 ${pct(applied, 0.5).toFixed(0)} ms, p99 ${pct(applied, 0.99).toFixed(0)} ms; load ${loadavg()[0].toFixed(1)}`)
    const p50 = pct(lat, 0.5)
    const p99 = pct(lat, 0.99)
    lat.sort((x, y) => x - y)
    t.comment(`PUT on A -> seen applied by polling B, 30 changes: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${lat[lat.length - 1].toFixed(1)} ms`)
    t.ok(lat[lat.length - 1] < 1000, 'every change reached B within 1 s')
    await until(async () => (await status(c)).configVersion === version, 5000, `C at version ${version}`, 5)
    t.equal(await whoAnswers(c), ups[0].id, 'C follows too (last change went to the first upstream)')
    const metrics = (await get(`${b.address}/metrics`)).text
    t.match(metrics, /config_propagation_seconds_count 30/, 'B observed 30 propagations')
    const sum = Number(/config_propagation_seconds_sum ([\d.e-]+)/.exec(metrics)?.[1])
    putMs.sort((x, y) => x - y)
    t.comment(`PUT answered on A: p50 ${putMs[15].toFixed(1)} ms; Redis write -> applied on B (config_propagation_seconds): mean ${(sum / 30 * 1000).toFixed(1)} ms`)
    t.match(metrics, new RegExp(`config_version ${version}`))
    t.match(metrics, /cluster_nodes 3/)
    t.match(metrics, /redis_up 1/)
  })

  await t.test('stale 409, missing If-Match 428, invalid 400: nothing written', async (t) => {
    const cur = (await get(`${a.address}/gateway/config`, { headers: AUTH })).body
    const stale = await putConfig(b, shared([{ id: 'x', url: ups[2].url }]), cur.version - 1)
    t.equal(stale.status, 409)
    t.equal(stale.body.code, 'FHG_ERR_CONFIG_CONFLICT')
    t.equal(stale.body.currentVersion, cur.version, 'names the current version')

    const none = await putConfig(b, shared([{ id: 'x', url: ups[2].url }]))
    t.equal(none.status, 428)

    const bad = await putConfig(b, shared([{ id: 'x', url: 'not a url' }]), cur.version)
    t.equal(bad.status, 400)
    t.equal(bad.body.code, 'FHG_ERR_INVALID_CONFIG')
    t.ok(bad.body.issues.some((i: { path: string }) => i.path === 'upstreams.api.targets[0].url'), 'the issue names the key')

    const bootOnly = await putConfig(b, { ...(shared([{ id: 'x', url: ups[2].url }]) as object), rateLimit: { headers: 'legacy' } }, cur.version)
    t.equal(bootOnly.status, 400, 'the limiter\'s own options cannot change at runtime')
    t.ok(bootOnly.body.issues.some((i: { path: string }) => i.path === 'rateLimit.headers'), 'the issue names rateLimit.headers')

    const perNode = await putConfig(b, { ...(shared([{ id: 'x', url: ups[2].url }]) as object), admin: { token: 'x' } }, cur.version)
    t.equal(perNode.status, 400, 'per-node keys are not part of the shared config')

    t.equal((await get(`${a.address}/gateway/config`, { headers: AUTH })).body.version, cur.version, 'no version written')
    t.equal(await whoAnswers(b), ups[0].id, 'B runs the config it had')
    const unauth = await get(`${a.address}/gateway/config`)
    t.equal(unauth.status, 401)
  })

  await t.test('a SIGKILLed node leaves the view within the TTL; a graceful one at once', async (t) => {
    const t0 = performance.now()
    await kill(c, 'SIGKILL')
    const gone = await until(async () => !(await ids(a)).includes('gw-c') && !(await ids(b)).includes('gw-c'), 10_000, 'C gone from A and B')
    t.comment(`SIGKILL: gone from the view after ${(performance.now() - t0).toFixed(0)} ms (TTL ${3 * HEARTBEAT} ms, heartbeat ${HEARTBEAT} ms)`)
    t.ok(gone < 3 * HEARTBEAT + 2 * HEARTBEAT + 1500, 'within TTL + an interval (+ slack)')

    const t1 = performance.now()
    b.child.kill('SIGTERM')
    await until(async () => !(await ids(a)).includes('gw-b'), 10_000, 'B gone from A', 10)
    const took = performance.now() - t1
    t.comment(`SIGTERM: gone from A's view after ${took.toFixed(0)} ms`)
    t.ok(took < 3 * HEARTBEAT, 'a graceful shutdown leaves before the TTL could lapse')
    await b.exit
    t.same(await ids(a), ['gw-a'])
  })
  await kill(a, 'SIGTERM')
})

t.test('a node booted while Redis is down serves its file, joins once Redis appears; later boots use the snapshot', async (t) => {
  const r2 = await startRedis()
  t.teardown(async () => { await r2.stop() })
  await r2.kill()
  const url = r2.url
  const d = await start('gw-d', configFile('gw-d', url, ups[2].url, 'down'))
  t.equal(await whoAnswers(d), ups[2].id, 'serves from its file with Redis down')
  const v = await view(d)
  t.equal(v.redis, 'down')
  t.same(v.nodes.map((n) => n.id), ['gw-d'], 'alone')
  t.equal((await status(d)).configVersion, 0, 'version 0: its own file, never stored')

  await r2.restart()
  const joined = await until(async () => (await status(d)).configVersion === 1, 10_000, 'D seeded the store')
  t.comment(`Redis back: D synced after ${joined.toFixed(0)} ms`)
  t.equal((await view(d)).redis, 'up')
  await until(async () => existsSync(join(dir, 'gw-d.snapshot.json')), 5000, 'the snapshot is written')
  t.pass('the applied config was written as a snapshot')

  // a second node with another file: the store wins over its file
  const e = await start('gw-e', configFile('gw-e', url, ups[1].url, 'down'))
  await until(async () => (await status(e)).configVersion === 1, 10_000, 'E applies the store')
  t.equal(await whoAnswers(e), ups[2].id, 'E routes by the store, not by its file')
  await until(async () => (await ids(d)).join() === 'gw-d,gw-e' && (await ids(e)).join() === 'gw-d,gw-e', 10_000, 'D and E see each other')
  t.pass('D joined the cluster once Redis appeared')

  // D again, Redis down, with a file that names another upstream: the snapshot wins over the file
  await Promise.all([kill(d), kill(e)])
  await r2.kill()
  const d2 = await start('gw-d', configFile('gw-d', url, ups[0].url, 'down'))
  t.equal((await status(d2)).configVersion, 1, 'booted on the snapshot\'s version')
  t.equal(await whoAnswers(d2), ups[2].id, 'serves the snapshot, not the file')
  await kill(d2)
})
