// Chaos, Redis Cluster (issue 15): 3 masters + 3 replicas (cluster-require-full-coverage no: the surviving masters
// serve their slots while one is down), three gateway nodes under load with limits on keys spread over every slot,
// policy local. A master is SIGKILLed: limits on the other masters' slots stay exact throughout; those on the lost
// slots follow the outage policy (local share: limit ÷ 3 live nodes, per node); exact again once its replica is
// promoted. No request waits > 1 s in a gateway node (its own time to answer, x-server-ms: the test's client runs in the
// same process, on a shared machine, and its stalls are printed, not asserted). The outage policy is applied per master (StoreGuard shards), not to every key.
import t from 'tap'
import { Redis } from 'ioredis'
import { startRedisCluster } from '../helpers/redis.js'
import { burst, redisReady, send, startNodes, tally } from '../helpers/ratelimit-nodes.js'
import { byStatus, load, pct } from '../helpers/chaos.js'
import { until } from '../helpers/poll.js'
import { keyBuilder } from '../../lib/ratelimit/key.js'
import { keySlot } from '../../lib/cluster/key-slot.js'

const LIMIT = 30
const SHARE = Math.floor(LIMIT / 3)
const NAME = 'chaos-rc'

const cluster = await startRedisCluster(3, { replicas: 1, args: ['--cluster-require-full-coverage', 'no'], nodeTimeout: 2000 })
t.teardown(async () => { await cluster.stop() })
/** A connection to each node, for CLUSTER SLOTS. */
const admins = cluster.all.map((port) => {
  const c = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false })
  c.on('error', () => {})
  return c
})
t.teardown(() => { for (const c of admins) c.disconnect() })

/** The key of client `name` on route /r (rule 0, header key), as the plugin builds it. */
const keyOf = keyBuilder(`${NAME}:rl:`, '/r', 0)
const slotOf = (name: string): number => keySlot(keyOf(`h:${name}`))

/** Slot ranges and their masters' client ports, as a live node says now (`except`: a node not to ask). */
async function slotMap (except?: number): Promise<Array<[number, number, number]>> {
  for (let i = 0; i < cluster.all.length; i++) {
    if (cluster.all[i] === except || admins[i].status !== 'ready') continue
    try {
      const slots = await admins[i].cluster('SLOTS')
      return slots.map(([from, to, master]) => [from, to, master[1]])
    } catch {}
  }
  return []
}
const ownerIn = (map: Array<[number, number, number]>, slot: number): number | undefined => map.find(([from, to]) => slot >= from && slot <= to)?.[2]

t.test('a master SIGKILLed under load: other slots exact throughout, lost slots local then exact after promotion', async (t) => {
  const { nodes, close } = await startNodes(3, {
    plugin: { redis: { nodes: cluster.nodes }, clusterName: NAME, onStoreError: 'local', liveNodes: () => 3 },
    rateLimit: { algorithm: 'fixed_window', limit: LIMIT, window: 3_600_000, key: 'header:x-client' },
  })
  t.teardown(close)
  await redisReady(nodes, 15_000)
  const urls = nodes.map((n) => n.url)

  // the victim: the master of slot 0; the lost slots are the ones it held. Clients of each class, a fresh one per check
  const before = await slotMap()
  const victim = ownerIn(before, 0)!
  t.equal(new Set(before.map(([, , port]) => port)).size, 3, 'three masters share the slots')
  let n = 0
  const fresh = (lost: boolean): string => {
    for (;;) {
      const name = `${lost ? 'lost' : 'kept'}-${n++}`
      if ((ownerIn(before, slotOf(name)) === victim) === lost) return name
    }
  }
  /** LIMIT + 6 requests of one client at once over the three nodes. */
  const exact = async (name: string): Promise<Record<number, number>> => tally(await burst(nodes, '/r', LIMIT + 6, { 'x-client': name }))

  t.same(await exact(fresh(true)), { 200: LIMIT, 429: 6 }, 'before: a client on the victim\'s slots, exact')
  t.same(await exact(fresh(false)), { 200: LIMIT, 429: 6 }, 'before: a client on another master\'s slots, exact')

  // load: fresh clients all over the slots (each within any share)
  const bg = load(() => urls, '/r', 6, undefined, () => ({ 'x-client': `bg-${Math.floor(Math.random() * 1e9)}` }))
  await new Promise((resolve) => setTimeout(resolve, 300))
  const killAt = Date.now()
  await cluster.killPort(victim, 'SIGKILL')

  // during the outage: a client of the lost slots on one node gets the local share; clients of the other slots stay exact
  const lostName = fresh(true)
  const during = tally(await burst([nodes[0]], '/r', LIMIT, { 'x-client': lostName }))
  const ownerNow = ownerIn(await slotMap(victim), 0)
  const promotedEarly = ownerNow !== undefined && ownerNow !== victim
  const keptDuring: Array<Record<number, number>> = []
  let promotedAt = 0
  await until(async () => {
    keptDuring.push(await exact(fresh(false)))
    const owner = ownerIn(await slotMap(victim), 0)
    if (owner !== undefined && owner !== victim) promotedAt = Date.now()
    return promotedAt !== 0
  }, 20_000, 'the victim\'s replica promoted', 100)

  // exact again: each node decides a fresh client of the lost slots in Redis (RateLimit r = LIMIT - 1, not the share's)
  const exactMs = await until(async () => {
    const rs = await Promise.all(urls.map(async (u) => await send(u + '/r', { 'x-client': fresh(true) })))
    return rs.every((r) => new RegExp(`;r=${LIMIT - 1};`).test(String(r.headers.ratelimit ?? '')))
  }, 10_000, 'the lost slots decided in Redis again on every node', 50).then(() => Date.now() - promotedAt)
  const lostAfter = await exact(fresh(true))
  const keptAfter = await exact(fresh(false))
  const hits = await bg.stop()
  const ms = hits.map((h) => h.ms)
  const server = hits.map((h) => h.serverMs ?? Infinity)
  const inOutage = hits.filter((h) => h.at >= killAt && h.at <= promotedAt)

  t.comment(`Redis Cluster master :${victim} SIGKILL: ${hits.length} requests under load ${JSON.stringify(byStatus(hits))} (${inOutage.length} before the promotion), ` +
    `server side p99 ${pct(server, 99).toFixed(0)} ms, slowest ${Math.max(...server).toFixed(0)} ms (client side p99 ${pct(ms, 99).toFixed(0)} ms, slowest ${Math.max(...ms).toFixed(0)} ms); replica promoted ${promotedAt - killAt} ms after the kill; ` +
    `lost slots: one client on one node during the outage ${JSON.stringify(during)} (local share ${SHARE}), decided in Redis again on every node ${exactMs} ms after the promotion, after ${JSON.stringify(lostAfter)}; ` +
    `other slots: ${keptDuring.length} clients during the outage ${JSON.stringify(keptDuring.reduce<Record<number, number>>((a, r) => { for (const k in r) a[k] = (a[k] ?? 0) + r[k]; return a }, {}))}, after ${JSON.stringify(keptAfter)}`)
  t.ok(Math.max(...server) < 1000, `no request waited 1 s in a node (slowest ${Math.max(...server).toFixed(0)} ms)`)
  t.same(byStatus(hits), { 200: hits.length }, 'load of fresh clients served throughout')
  t.notOk(promotedEarly, 'the lost-slot client ran before the promotion')
  t.same(during, { 200: SHARE, 429: LIMIT - SHARE }, 'lost slots during the outage: limit ÷ 3 live nodes on one node')
  t.ok(keptDuring.length >= 1 && keptDuring.every((r) => r[200] === LIMIT && r[429] === 6), `other slots exact throughout the outage (${keptDuring.length} clients, each 30 of 36)`)
  t.ok(exactMs <= 5000, `lost slots decided in Redis again ${exactMs} ms after the promotion`)
  t.same(lostAfter, { 200: LIMIT, 429: 6 }, 'after the promotion: the lost slots exact again')
  t.same(keptAfter, { 200: LIMIT, 429: 6 }, 'after: other slots exact')
})
