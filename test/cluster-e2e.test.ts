// Cluster end to end, the cases issue 6 lists beside test/cluster.test.ts: cache invalidation between nodes
// (fastify.cluster.cache), a missed pub/sub message healed by the periodic pull within one heartbeat, and
// config PUTs during a Sentinel failover losing no accepted version. Real redis-server / sentinel processes;
// gateway nodes are CLI processes, except for the cache case (the cache is an in-process API).
import t, { type Test } from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { startNode } from '../plugins/gateway.js'
import { validateConfig } from '../lib/config/index.js'
import type { RedisProcess } from './helpers/redis.js'
import { startSentinelGroup } from './helpers/sentinel.js'
import type { UpstreamProcess } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'
import { startCliNode, startClusterFixture, type CliNode } from './helpers/node.js'
import { until } from './helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-cluster-e2e-'))
const TOKEN = 'e2e-cluster-admin-token'
const AUTH = { authorization: `Bearer ${TOKEN}` }
const HEARTBEAT = 500
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

let redis: RedisProcess
let ups: UpstreamProcess[]
const nodes: CliNode[] = []
t.before(async () => { ({ redis, ups } = await startClusterFixture(t, 2, 'e', nodes)) })

function configFile (id: string, cluster: string, redisYaml: string): string {
  const p = join(dir, `${id}.yaml`)
  writeFileSync(p, `
node: { id: ${id}, port: 0 }
cluster: { name: ${cluster}, redis: ${redisYaml}, heartbeatInterval: ${HEARTBEAT}ms, snapshotPath: ${join(dir, `${id}.snapshot.json`)} }
upstreams:
  api:
    targets:
      - { id: first, url: ${ups[0].url} }
routes:
  - { path: /api, upstream: api }
admin: { token: ${TOKEN} }
`)
  return p
}

async function start (id: string, cluster: string, redisYaml: string): Promise<CliNode> {
  const n = await startCliNode(configFile(id, cluster, redisYaml), { id })
  nodes.push(n)
  return n
}

const shared = (id: string, url: string, weight = 1): Record<string, unknown> => ({
  upstreams: { api: { targets: [{ id, url, weight }] } },
  routes: [{ path: '/api', upstream: 'api' }],
})
const configVersion = async (n: CliNode): Promise<number> => (await get(`${n.address}/gateway/status`, { headers: AUTH })).body.configVersion
const whoAnswers = async (n: CliNode): Promise<string> => (await get(`${n.address}/api/x`)).body.id

async function putConfig (n: CliNode, body: unknown, ifMatch: number): Promise<Awaited<ReturnType<typeof get>>> {
  return await get(`${n.address}/gateway/config`, {
    method: 'PUT', headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(ifMatch) }, body: JSON.stringify(body),
  })
}

t.test('cache: a set, an overwrite and a delete on one node reach the other (fastify.cluster.cache)', async (t) => {
  const mk = async (id: string): Promise<Awaited<ReturnType<typeof startNode>>> => {
    const n = await startNode(validateConfig({
      node: { id, host: '127.0.0.1', port: 0 },
      cluster: { name: 'e2e-cache', redis: redis.url, heartbeatInterval: HEARTBEAT },
      upstreams: { api: { targets: [{ id: 'first', url: ups[0].url }] } },
      routes: [{ path: '/api', upstream: 'api' }],
    }))
    t.teardown(async () => { await n.close() })
    return n
  }
  const [a, b] = await Promise.all([mk('cache-a'), mk('cache-b')])
  await until(() => a.app.cluster.cache.listening && b.app.cluster.cache.listening, 5000, 'both listen for invalidations')
  const ca = a.app.cluster.cache
  const cb = b.app.cluster.cache

  const v1 = await ca.set('greeting', { text: 'hello' }, 30_000)
  t.ok(v1 !== undefined, 'A stored it in Redis')
  t.same(await cb.get('greeting'), { text: 'hello' }, 'B reads it')
  t.same(cb.peek('greeting')?.value, { text: 'hello' }, 'and now holds it locally')

  const v2 = await ca.set('greeting', { text: 'bonjour' }, 30_000)
  const ms = await until(() => cb.seenVersion('greeting') === v2, 2000, 'B told about v2', 1)
  t.comment(`overwrite: invalidation reached B after ~${ms.toFixed(1)} ms`)
  t.equal(cb.peek('greeting'), undefined, 'B dropped its local v1 at once')
  t.same(await cb.getEntry('greeting'), { value: { text: 'bonjour' }, version: v2 }, 'B serves v2, never v1 again')

  const vd = await cb.delete('greeting')
  await until(() => ca.seenVersion('greeting') === vd, 2000, 'A told about the delete', 1)
  t.equal(await ca.get('greeting'), undefined, 'a delete on B reaches A')
})

t.test('a missed pub/sub message is healed by the periodic pull within one heartbeat', async (t) => {
  const [a, b] = await Promise.all(['heal-a', 'heal-b'].map(async (id) => await start(id, 'heal', redis.url)))
  await until(async () => await configVersion(a) === 1 && await configVersion(b) === 1, 15_000, 'both on version 1')
  const r = new Redis(redis.url)
  t.teardown(() => { r.disconnect() })

  await t.test('a version written straight to the store, never published', async (t) => {
    // the documented format: HASH `${cluster}:config` { version, rev, config, updatedAt }
    const cur = Number(await r.hget('heal:config', 'version'))
    const doc = shared('written-directly', ups[1].url)
    const t0 = performance.now()
    await r.hset('heal:config', 'version', cur + 1, 'rev', 'direct-1', 'config', JSON.stringify(doc), 'updatedAt', Date.now())
    const took = await until(async () => await configVersion(a) === cur + 1 && await configVersion(b) === cur + 1, 5000, 'both apply it', 5)
    t.comment(`unannounced write: applied on A and B after ${took.toFixed(0)} ms (heartbeat ${HEARTBEAT} ms)`)
    t.ok(performance.now() - t0 < HEARTBEAT + 700, 'within one heartbeat (+ slack for a loaded machine)')
    t.equal(await whoAnswers(b), ups[1].id, 'B routes by it')
  })

  await t.test('the subscriber connections are killed, then a PUT: B still gets it', async (t) => {
    const cur = await configVersion(a)
    await r.call('CLIENT', 'KILL', 'TYPE', 'pubsub')
    const res = await putConfig(a, shared('after-kill', ups[0].url), cur)
    t.equal(res.status, 200)
    const took = await until(async () => await configVersion(b) === cur + 1, 5000, 'B applies it', 5)
    t.comment(`PUT while B's subscriber was reconnecting: applied on B after ${took.toFixed(0)} ms`)
    t.ok(took < HEARTBEAT + 700, 'within one heartbeat (+ slack)')
    t.equal(await whoAnswers(b), ups[0].id)
  })
  await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')])
})

t.test('Sentinel failover during config PUTs: no accepted version is lost, PUTs resume on the new master', async (t) => {
  await t.test('the master is SIGKILLed', async (t) => { await failover(t, 'fo1', false) })
  await t.test('the replica falls behind (stopped, its link dropped), then the master is SIGKILLed', async (t) => { await failover(t, 'fo2', true) })
})

/**
 * PUT after PUT (each with the version its node just read, alternating two CLI nodes) while the master dies.
 * `lag`: first the replica falls behind: it is stopped and the master drops its link (output buffer limit
 * passed), so for 600 ms writes reach the master only; then the master dies and the replica resumes, and
 * Sentinel promotes it without those writes. Every PUT answered 2xx must be in the final version sequence.
 */
async function failover (t: Test, cluster: string, lag: boolean): Promise<void> {
  const group = await startSentinelGroup(`${cluster}master`)
  t.teardown(async () => { await group.stop() })
  const yaml = `{ sentinels: [${group.sentinels.map((s) => `{ host: ${s.host}, port: ${s.port} }`).join(', ')}], name: ${group.name} }`
  const [a, b] = await Promise.all([`${cluster}-a`, `${cluster}-b`].map(async (id) => await start(id, cluster, yaml)))
  await until(async () => await configVersion(a) === 1 && await configVersion(b) === 1, 15_000, 'both on version 1')

  // one config PUT of the loop below (not a proxy try: `Attempt` is lib/proxy/attempt.ts)
  interface ConfigPut { i: number, at: number, status: number, version?: number, code?: string }
  const attempts: ConfigPut[] = []
  const t0 = performance.now()
  let stop = false
  const loop = (async () => {
    for (let i = 0; !stop; i++) {
      const n = i % 2 === 0 ? a : b
      try {
        const cur = await get(`${n.address}/gateway/config`, { headers: AUTH })
        if (cur.status !== 200) throw new Error(`GET config: ${cur.status}`)
        const res = await putConfig(n, shared(`m${i}`, ups[i % 2].url), cur.body.version)
        attempts.push({ i, at: performance.now() - t0, status: res.status, version: res.body?.version, code: res.body?.code })
      } catch (err) {
        attempts.push({ i, at: performance.now() - t0, status: 0, code: (err as Error).message })
      }
      await sleep(20)
    }
  })()

  await sleep(1000)
  let cutAt = NaN
  if (lag) {
    // a stopped replica still gets what fits in its socket buffers: overflow them so the master drops the link
    const m = new Redis({ port: group.master.port, host: '127.0.0.1' })
    await m.config('SET', 'client-output-buffer-limit', 'replica 1mb 1mb 0')
    await group.replica.kill('SIGSTOP')
    const junk = 'x'.repeat(4 * 1024 * 1024)
    for (let i = 0; i < 6; i++) await m.set(`junk:${i}`, junk)
    await until(async () => /connected_slaves:0/.test(await m.info('replication')), 5000, 'the master dropped the replica')
    m.disconnect()
    cutAt = performance.now() - t0
    await sleep(600)
  }
  await group.master.kill('SIGKILL')
  const killedAt = performance.now() - t0
  if (lag) await group.replica.kill('SIGCONT')
  const oldPort = group.master.port
  await until(async () => await group.masterPort() !== oldPort, 20_000, 'sentinel switched master', 100)
  const switchedAt = performance.now() - t0
  await until(() => attempts.some((x) => x.at > switchedAt && x.status === 200), 20_000, 'PUTs accepted again', 50)
  await sleep(1000)
  stop = true
  await loop

  const accepted = attempts.filter((x) => x.status === 200)
  const byStatus = attempts.reduce<Record<string, number>>((m, x) => { m[x.status] = (m[x.status] ?? 0) + 1; return m }, {})
  const resumed = accepted.find((x) => x.at > killedAt)?.at ?? NaN
  const inCut = attempts.filter((x) => x.at > cutAt && x.at < killedAt)
  t.comment(`${attempts.length} PUTs: ${JSON.stringify(byStatus)}; ${lag ? `replica cut off at ${cutAt.toFixed(0)} ms (${inCut.filter((x) => x.status === 200).length} of ${inCut.length} PUTs in the cut accepted), ` : ''}master SIGKILLed at ${killedAt.toFixed(0)} ms, sentinel switched at ${switchedAt.toFixed(0)} ms, first accepted PUT after the kill at ${resumed.toFixed(0)} ms`)
  t.ok(accepted.some((x) => x.at < killedAt) && accepted.some((x) => x.at > killedAt), 'PUTs accepted before and after the failover')

  const versions = accepted.map((x) => x.version!)
  let max = 0
  const reused = versions.filter((v) => { const again = v <= max; max = Math.max(max, v); return again })
  t.same(reused, [], 'accepted versions only grow: no version was handed out twice (a lost write would be reused)')
  const last = accepted[accepted.length - 1]
  const finalDoc = (await get(`${a.address}/gateway/config`, { headers: AUTH })).body
  t.equal(finalDoc.version, last.version, 'the store holds the last accepted version')
  t.ok(finalDoc.version >= accepted.length, `final version ${finalDoc.version} >= ${accepted.length} accepted PUTs`)
  t.equal(finalDoc.config.upstreams.api.targets[0].id, `m${last.i}`, 'and the last accepted document')
  await until(async () => await configVersion(b) === last.version, 5000, 'B converged')
  t.pass('both nodes run the last accepted version')
  await Promise.all([a.kill('SIGTERM'), b.kill('SIGTERM')])
}
