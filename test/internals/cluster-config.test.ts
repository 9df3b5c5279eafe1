import t from 'tap'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createRedisConnection, closeRedisConnection, type RedisClient } from '../../lib/cluster/redis-connection.js'
import { createClusterContext, type ClusterContext } from '../../lib/cluster/context.js'
import { ClusterConfigManager, ConfigConflictError, type ConfigDoc } from '../../lib/cluster/config-store.js'
import { GatewayError } from '../../lib/errors.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

// generous deadlines: the test machine is shared and slow, the code under test is not timed here
const SLOW = { commandTimeout: 1000 }

interface Cfg { upstreams: Record<string, { targets: string[] }>, n?: number }
interface Node { client: RedisClient, ctx: ClusterContext, store: ClusterConfigManager<Cfg> }

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(p / 100 * s.length) - 1)]
}

t.test('config store on one redis-server', async (t) => {
  const redis = await startRedis()
  const dir = mkdtempSync(join(tmpdir(), 'fhg-config-test-'))
  const nodes: Node[] = []
  const make = (name: string, o: { interval?: number, snapshot?: string } = {}): Node => {
    const client = createRedisConnection(redis.url, SLOW)
    const ctx = createClusterContext({ client, timeout: 1500, name })
    const store = new ClusterConfigManager<Cfg>(ctx, { interval: o.interval ?? 1000, snapshotPath: o.snapshot })
    const n = { client, ctx, store }
    nodes.push(n)
    return n
  }
  t.teardown(async () => {
    for (const n of nodes) {
      await n.store.close()
      await n.ctx.close()
      await closeRedisConnection(n.client)
    }
    await redis.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  const ready = async (...ns: Node[]): Promise<void> => {
    await until(() => ns.every((n) => n.ctx.link.up), 3000, 'condition', 5)
  }

  await t.test('seedIfEmpty only seeds an empty store', async (t) => {
    const a = make('seed')
    await ready(a)
    t.equal(await a.store.get(), undefined, 'empty at first')
    t.equal(await a.store.seedIfEmpty({ upstreams: { u: { targets: ['file-1'] } } }), true)
    t.equal(await a.store.seedIfEmpty({ upstreams: { u: { targets: ['file-2'] } } }), false, 'a second file does not overwrite')
    const doc = await a.store.get()
    t.match(doc, { version: 1, config: { upstreams: { u: { targets: ['file-1'] } } } })
    t.type(doc!.rev, 'string')
    t.ok(doc!.updatedAt > 0)
  })

  await t.test('a PUT at the running version onto a store that lost its data (before any pull put it back) is accepted', async (t) => {
    const a = make('emptied', { interval: 60_000 }) // no periodic pull during the test
    await ready(a)
    a.store.start()
    t.equal(await a.store.seedIfEmpty({ upstreams: {}, n: 1 }), true)
    await a.store.sync(true)
    const running = a.store.current!.version
    await a.client.flushall() // Redis restarted without persistence: the document is gone, no 'up' event here
    const doc = await a.store.put({ upstreams: {}, n: 2 }, running)
    t.equal(doc.version, running + 1, 'written as the next version: the running one was put back first')
    t.match(await a.store.get(), { version: running + 1, config: { n: 2 } })
    await t.rejects(a.store.put({ upstreams: {} }, running), { code: 'FHG_ERR_CONFIG_CONFLICT', currentVersion: running + 1 }, 'a stale writer is still refused')
    await a.client.flushall()
    await t.rejects(a.store.put({ upstreams: {} }, running + 5), { code: 'FHG_ERR_CONFIG_CONFLICT', currentVersion: 0 }, 'an expected version this node does not run is not restored')
  })

  await t.test('put on A reaches a watcher on B within 1 s; stale put -> Conflict', async (t) => {
    const a = make('sync')
    const b = make('sync', { snapshot: join(dir, 'b', 'snapshot.json') })
    a.store.start()
    b.store.start()
    await ready(a, b)
    await until(() => a.ctx.pubsub.connected && b.ctx.pubsub.connected, 3000, 'condition', 5)
    const seenOnB: number[] = []
    let lastSeen: ConfigDoc<Cfg> | undefined
    const seenAt = new Map<number, number>()
    b.store.watch((doc) => { seenOnB.push(doc.version); lastSeen = doc; seenAt.set(doc.version, performance.now()) })
    let version = 0
    const first = await a.store.put({ upstreams: { u: { targets: ['t0'] } } }, version)
    version = first.version
    t.equal(version, 1)
    await until(() => lastSeen?.version === 1, 1000, 'condition', 5)

    const lat: number[] = []
    for (let i = 1; i <= 30; i++) {
      const start = performance.now()
      const doc = await a.store.put({ upstreams: { u: { targets: [`t${i}`] } }, n: i }, version)
      version = doc.version
      await until(() => lastSeen?.version === version, 1000, 'condition', 1)
      lat.push(seenAt.get(version)! - start)
      t.equal(lastSeen!.config.n, i)
    }
    const p50 = percentile(lat, 50)
    const p99 = percentile(lat, 99)
    t.comment(`put on A -> watcher on B over 30 changes: p50 ${p50.toFixed(2)} ms, p99 ${p99.toFixed(2)} ms, max ${Math.max(...lat).toFixed(2)} ms`)
    t.ok(p99 < 1000, 'every change within 1 s')
    t.same(seenOnB, Array.from({ length: 31 }, (_, i) => i + 1), 'B saw every version once, in order')
    t.equal(a.store.current?.version, version, 'A applies its own put')

    const err = await a.store.put({ upstreams: {} }, version - 1).catch((e: unknown) => e)
    t.ok(err instanceof ConfigConflictError, 'stale version -> ConfigConflictError')
    t.match(err, { code: 'FHG_ERR_CONFIG_CONFLICT', statusCode: 409, currentVersion: version })
    t.equal((await a.store.get())!.version, version, 'nothing written')

    await t.test('snapshot: the last good config on disk, round-trip', async (t) => {
      const path = join(dir, 'b', 'snapshot.json')
      await until(() => { try { return JSON.parse(readFileSync(path, 'utf8')).version === version } catch { return false } }, 2000, 'condition', 5)
      const snap = await b.store.loadSnapshot()
      t.match(snap, { version, rev: lastSeen!.rev, config: { n: 30 } })
      t.same(readdirSync(join(dir, 'b')), ['snapshot.json'], 'no temp file left behind')
      const fresh = new ClusterConfigManager<Cfg>(createClusterContext({ name: 'sync' }), { interval: 1000, snapshotPath: path })
      t.same(await fresh.loadSnapshot(), snap, 'another instance (no Redis) boots from it')
      const none = new ClusterConfigManager<Cfg>(createClusterContext({ name: 'sync' }), { interval: 1000, snapshotPath: join(dir, 'missing.json') })
      t.equal(await none.loadSnapshot(), undefined)
    })

    await t.test('a watcher that throws refuses the document: no snapshot of it', async (t) => {
      const c = make('sync', { snapshot: join(dir, 'c.json') })
      const errors: Error[] = []
      const store = new ClusterConfigManager<Cfg>(c.ctx, { interval: 1000, snapshotPath: join(dir, 'c.json'), onError: (e) => errors.push(e) })
      store.watch(() => { throw new Error('invalid config') })
      await ready(c)
      await store.sync()
      t.equal(store.current?.version, version)
      t.equal(errors.length, 1)
      t.equal(await store.loadSnapshot(), undefined)
      await store.close()
    })

    await t.test('a missed pub/sub message is healed by the periodic pull', async (t) => {
      // change the document behind the nodes' backs: no PUBLISH at all
      const next = version + 1
      const start = Date.now()
      await a.client.hset('sync:config', 'version', next, 'rev', 'manual', 'config', JSON.stringify({ upstreams: {}, n: 99 }), 'updatedAt', Date.now())
      const ms = await until(() => lastSeen?.version === next, 3000, 'condition', 5)
      t.comment(`healed by the pull after ${Date.now() - start} ms (interval 1000 ms)`)
      t.ok(ms <= 1000 + 500, 'within one interval (+ slack)')
      t.equal(lastSeen!.config.n, 99)
      version = next
    })

    await t.test('Redis killed: no throw, put reports unavailable, and everything resumes after restart', async (t) => {
      const downs: string[] = []
      b.ctx.link.on('down', () => downs.push('down'))
      await redis.kill('SIGKILL')
      const err = await a.store.put({ upstreams: {} }, version).catch((e: unknown) => e)
      t.ok(err instanceof GatewayError)
      t.match(err, { code: 'FHG_ERR_REDIS_UNAVAILABLE', statusCode: 503 })
      await b.store.sync() // a pull while down resolves
      await until(() => downs.length === 1, 3000, 'condition', 5)
      t.equal(b.store.current?.version, version, 'B keeps running its config')
      await redis.restart()
      // the restarted Redis is empty (no persistence): a node writes back what it runs
      await until(() => a.ctx.link.up && b.ctx.link.up && a.ctx.pubsub.connected && b.ctx.pubsub.connected, 5000, 'condition', 5)
      let doc: ConfigDoc<Cfg> | undefined
      const start = Date.now()
      while (Date.now() - start < 5000) {
        doc = await a.store.get().catch(() => undefined)
        if (doc !== undefined) break
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      t.match(doc, { version, config: { n: 99 } }, 'reseeded with the same version')
      const after = await a.store.put({ upstreams: {}, n: 100 }, version)
      await until(() => lastSeen?.version === after.version, 1500, 'condition', 5)
      t.equal(lastSeen!.config.n, 100, 'watch resumed')
    })
  })
})

t.test('without Redis: a local document with the same CAS rules', async (t) => {
  const ctx = createClusterContext({ name: 'solo' })
  const store = new ClusterConfigManager<Cfg>(ctx, { interval: 100 })
  store.start()
  const seen: number[] = []
  store.watch((d) => { seen.push(d.version) })
  t.equal(await store.seedIfEmpty({ upstreams: {} }), true)
  t.equal(await store.seedIfEmpty({ upstreams: {} }), false)
  t.equal((await store.get())!.version, 1)
  const d2 = await store.put({ upstreams: {}, n: 2 }, 1)
  t.equal(d2.version, 2)
  await t.rejects(store.put({ upstreams: {} }, 1), { code: 'FHG_ERR_CONFIG_CONFLICT', currentVersion: 2 })
  t.same(seen, [2])
  await store.close()
})

t.test('minReplicas: put resolves only once a replica holds the write', async (t) => {
  // REDIS.md: without this the master waits 5 s before the replica's first sync
  const master = await startRedis({ args: ['--repl-diskless-sync-delay', '0'] })
  const replica = await startRedis({ args: ['--replicaof', '127.0.0.1', String(master.port)] })
  // generous deadlines: a loaded machine may take a while to get the replica's ack
  const client = createRedisConnection(master.url, { commandTimeout: 2000 })
  const ctx = createClusterContext({ client, name: 'repl', timeout: 2500 })
  const store = new ClusterConfigManager<Cfg>(ctx, { interval: 1000, minReplicas: 1, replicaTimeout: 1500 })
  t.teardown(async () => {
    await store.close()
    await ctx.close()
    await closeRedisConnection(client)
    await replica.stop()
    await master.stop()
  })
  const rc = createRedisConnection(replica.url, SLOW)
  t.teardown(() => closeRedisConnection(rc))
  await until(() => ctx.link.up && rc.status === 'ready', 3000, 'condition', 5)
  // the replica must have finished its first sync before WAIT can count it
  for (const end = Date.now() + 5000; Date.now() < end;) {
    if (/master_link_status:up/.test(await rc.info('replication'))) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const doc = await store.put({ upstreams: {}, n: 1 }, 0)
  t.equal(doc.version, 1)
  t.equal(await rc.hget('repl:config', 'version'), '1', 'the replica holds the accepted version')
  await replica.kill('SIGKILL')
  const err = await store.put({ upstreams: {}, n: 2 }, 1).catch((e: unknown) => e)
  t.match(err, { code: 'FHG_ERR_REDIS_UNAVAILABLE' }, 'not acknowledged by a replica: not reported as accepted')
})
