// Discovery feeding upstream targets, end to end: a gateway node as a real CLI process on a real redis-server,
// real upstream processes registered as service instances through the exported registerService helper
// (or the documented raw key format). An instance gets traffic within one heartbeat of registering, and
// stops getting it once it deregisters or its TTL lapses; static targets keep serving. Without Redis the
// node says so at boot and serves its static targets.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { closeRedisConnection, createRedisConnection, registerService } from '../lib/cluster/index.js'
import { gateway } from '../plugins/gateway.js'
import type { RedisProcess } from './helpers/redis.js'
import type { UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { startCliNode, startClusterFixture, type CliNode } from './helpers/node.js'
import { until } from './helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-cluster-discovery-'))
const TOKEN = 'discovery-admin-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const HEARTBEAT = 500 // ms
const TTL = 1500 // ms, of the registrations

let redis: RedisProcess
let ups: UpstreamProcess[]
const nodes: CliNode[] = []
t.before(async () => { ({ redis, ups } = await startClusterFixture(t, 4, 'sd', nodes)) })

/** Which upstream ids answer `n` requests to `path`. */
async function answering (base: string, path: string, n = 8): Promise<Set<string>> {
  const ids = new Set<string>()
  for (let i = 0; i < n; i++) {
    const res = await get(`${base}${path}`)
    ids.add(res.status === 200 ? res.body.id as string : `status ${res.status}`)
  }
  return ids
}

t.test('registered instances get traffic within a heartbeat and lose it when their TTL lapses', async (t) => {
  const file = join(dir, 'gw-d.yaml')
  writeFileSync(file, `
node: { id: gw-d, port: 0 }
cluster: { name: cdisc, redis: ${redis.url}, heartbeatInterval: ${HEARTBEAT}ms, snapshotPath: ${join(dir, 'gw-d.snapshot.json')} }
upstreams:
  users:
    discovery: { service: users }
    targets: [{ id: static-1, url: ${ups[0].url} }]
  orders:
    discovery: { service: orders }
routes:
  - { path: /users, upstream: users }
  - { path: /orders, upstream: orders }
admin: { token: ${TOKEN} }
`)
  const node = await startCliNode(file, { id: 'gw-d' })
  nodes.push(node)
  t.notOk(node.log.some((l) => l.includes('not implemented')), 'discovery is no longer reported as not implemented')
  const svc = createRedisConnection(redis.url, { commandTimeout: 1000 })
  const svc2 = createRedisConnection(redis.url, { commandTimeout: 1000 })
  t.teardown(async () => { await closeRedisConnection(svc); await closeRedisConnection(svc2) })

  t.same(await answering(node.address, '/users/x'), new Set(['sd-1']), 'before any registration: the static target only')
  t.same(await answering(node.address, '/orders/x', 2), new Set(['status 503']), 'a discovery-only upstream with no instance answers 503')

  // 1. registerService: routed within one heartbeat
  const figures: string[] = []
  let start = Date.now()
  const reg = registerService({ redis: svc, cluster: 'cdisc', service: 'users', id: 'users-2', url: ups[1].url, weight: 1, ttl: TTL })
  const regOrders = registerService({ redis: svc2, cluster: 'cdisc', service: 'orders', id: 'orders-1', url: ups[2].url, ttl: TTL })
  await Promise.all([reg.registered, regOrders.registered])
  const registeredAt = Date.now()
  const added = await until(async () => (await answering(node.address, '/users/x', 4)).has('sd-2'), 5_000, 'users-2 gets traffic', 10)
  figures.push(`registerService() -> routed ${Date.now() - start} ms (entry in Redis -> routed ${Date.now() - registeredAt} ms)`)
  t.ok(added <= 5_000, 'the registered instance gets traffic')
  t.same(await answering(node.address, '/users/x'), new Set(['sd-1', 'sd-2']), 'static and discovered targets share the traffic')
  await until(async () => (await answering(node.address, '/orders/x', 2)).has('sd-3'), 5_000, 'orders-1 serves', 10)
  const status = (await get(`${node.address}/gateway/status`, { headers: AUTH })).body
  t.match(status.upstreams.users.targets.find((x: { id: string }) => x.id === 'users-2'), { url: ups[1].url, weight: 1 })

  // 2. heartbeats keep it past its TTL
  await new Promise((resolve) => setTimeout(resolve, TTL + HEARTBEAT))
  t.ok((await answering(node.address, '/users/x')).has('sd-2'), 'still routed after more than one TTL: the helper heartbeats')

  // 3. its registration stops (the service's Redis connection dies): dropped once the TTL lapses
  svc.disconnect()
  start = Date.now()
  const dropped = await until(async () => {
    const ids = await answering(node.address, '/users/x', 4)
    return !ids.has('sd-2') && ids.has('sd-1')
  }, TTL + 10 * HEARTBEAT, 'users-2 loses traffic', 20)
  figures.push(`heartbeats stopped -> dropped ${Date.now() - start} ms (ttl ${TTL} ms, heartbeat ${HEARTBEAT} ms)`)
  t.ok(dropped <= TTL + 10 * HEARTBEAT, 'dropped after its TTL lapsed')
  t.same(await answering(node.address, '/users/x'), new Set(['sd-1']), 'only the static target is left')
  const log = node.log.join('\n')
  t.match(log, /discovered target added/)
  t.match(log, /discovered target removed/)
  await reg.stop()

  // 4. stop() deregisters at once (DEL + PUBLISH): no wait for the TTL
  start = Date.now()
  await regOrders.stop()
  await until(async () => (await answering(node.address, '/orders/x', 2)).has('status 503'), 5_000, 'orders-1 deregistered', 10)
  figures.push(`stop() -> dropped ${Date.now() - start} ms`)

  // 5. any language: the documented raw key format (SET ... PX, ZADD, PUBLISH)
  start = Date.now()
  await svc2.set('cdisc:svc:{users}:users-9', JSON.stringify({ id: 'users-9', url: ups[3].url }), 'PX', TTL)
  await svc2.zadd('cdisc:svc:{users}', Date.now() + TTL, 'users-9')
  await svc2.publish('cdisc:svc:changed', 'users')
  await until(async () => (await answering(node.address, '/users/x', 4)).has('sd-4'), 5_000, 'users-9 gets traffic', 10)
  figures.push(`raw key format -> routed ${Date.now() - start} ms`)
  await until(async () => !(await answering(node.address, '/users/x', 4)).has('sd-4'), TTL + 10 * HEARTBEAT, 'users-9 lapses', 20)
  t.pass('an instance written with the raw key format is routed, and dropped when its key expires')

  // 6. a config PUT (which rebuilds the pools from the static targets) keeps the discovered targets
  const reg3 = registerService({ redis: svc2, cluster: 'cdisc', service: 'users', id: 'users-3', url: ups[2].url, ttl: TTL })
  await reg3.registered
  await until(async () => (await answering(node.address, '/users/x', 4)).has('sd-3'), 5_000, 'users-3 gets traffic', 10)
  const cfg = (await get(`${node.address}/gateway/config`, { headers: AUTH })).body
  cfg.config.upstreams.users.targets[0].weight = 2
  const put = await get(`${node.address}/gateway/config`, {
    method: 'PUT', headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(cfg.version) }, body: JSON.stringify(cfg.config),
  })
  t.equal(put.status, 200, 'config PUT accepted')
  const after = (await get(`${node.address}/gateway/status`, { headers: AUTH })).body.upstreams.users.targets as Array<{ id: string, weight: number }>
  t.same(after.map((x) => x.id).sort(), ['static-1', 'users-3'], 'the discovered target survived the config apply')
  t.equal(after.find((x) => x.id === 'static-1')?.weight, 2, 'and the PUT applied')
  await reg3.stop()

  t.comment(`discovery figures: ${figures.join('; ')}`)
  console.log(`# discovery figures: ${figures.join('; ')}`)
})

t.test('without Redis, discovery has no source: a warning at boot, the static targets serve', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  const app = Fastify({ logger: { level: 'warn', stream } })
  await app.register(gateway, {
    upstreams: {
      users: { discovery: { service: 'users' }, targets: [{ id: 'static-1', url: ups[0].url }] },
      orders: { discovery: { service: 'orders' } },
    },
    routes: [{ path: '/users', upstream: 'users' }],
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => { await app.close() })
  const addr = app.server.address() as { port: number }
  const warns = lines.map((l) => JSON.parse(l) as { msg: string, upstream?: string })
  t.ok(warns.some((w) => w.upstream === 'users' && /no service registry without cluster\.redis; serving the static targets only/.test(w.msg)), 'warned for users')
  t.ok(warns.some((w) => w.upstream === 'orders' && /has no target and answers 503/.test(w.msg)), 'warned for orders')
  t.same(await answering(`http://127.0.0.1:${addr.port}`, '/users/x', 3), new Set(['sd-1']), 'the static target serves')
})
