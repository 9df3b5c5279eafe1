// SharedConfigRuntime without Fastify: boot precedence (store -> snapshot -> file), apply ordering and
// rollback, PUT validation (shape, schema, boot-only keys), on the in-memory store and on a real redis-server.
import t from 'tap'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createClusterContext, type ClusterContext } from '../../lib/cluster/context.js'
import { closeRedisConnection, createRedisConnection, type RedisClient } from '../../lib/cluster/redis-connection.js'
import { SharedConfigRuntime, pickShared, sharedShapeIssues, type SharedConfigLog } from '../../lib/cluster/shared-config.js'
import { ConfigError, validateConfig, type GatewayConfig } from '../../lib/config/index.js'
import { GatewayError } from '../../lib/errors.js'
import { startRedis } from '../helpers/redis.js'
import { until } from '../helpers/poll.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-shared-config-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

interface Line { level: string, msg: string, obj: unknown }
function memLog (): SharedConfigLog & { lines: Line[] } {
  const lines: Line[] = []
  const at = (level: string) => (obj: object | string, msg?: string): void => {
    lines.push({ level, msg: typeof obj === 'string' ? obj : msg ?? '', obj })
  }
  return { lines, info: at('info'), warn: at('warn'), error: at('error') }
}

const target = (id: string, port = 9): { id: string, url: string } => ({ id, url: `http://127.0.0.1:${port}` })
const sharedOf = (ids: string[]): { upstreams: Record<string, unknown>, routes: unknown[] } => ({
  upstreams: { api: { targets: ids.map((id) => target(id)) } },
  routes: [{ path: '/api', upstream: 'api' }],
})

function nodeConfig (id: string, o: { redis?: string, cluster?: string, snapshot?: string, targets?: string[], rateLimit?: Record<string, unknown> } = {}): GatewayConfig {
  return validateConfig({
    node: { id, port: 0 },
    cluster: {
      name: o.cluster ?? 'sc',
      ...(o.redis === undefined ? {} : { redis: o.redis }),
      heartbeatInterval: '200ms',
      snapshotPath: o.snapshot ?? join(dir, `${id}-${Math.random().toString(36).slice(2)}.json`),
    },
    ...sharedOf(o.targets ?? ['file-1']),
    ...(o.rateLimit === undefined ? {} : { rateLimit: o.rateLimit }),
  })
}

const targetIds = (c: GatewayConfig): string[] => c.upstreams.api.targets.map((x) => x.id)

t.test('helpers: the shared keys of an input, and what a PUT body may not hold', async (t) => {
  t.same(Object.keys(pickShared({ node: { id: 'x' }, upstreams: {}, routes: [], admin: {} })), ['upstreams', 'routes'])
  t.same(sharedShapeIssues([]).map((i) => i.path), [''], 'an array is refused as a whole')
  t.same(sharedShapeIssues(null).map((i) => i.path), [''])
  t.same(sharedShapeIssues({ upstreams: {}, node: {}, admin: {} }).map((i) => i.path), ['node', 'admin'], 'per-node keys are named')
  t.same(sharedShapeIssues({ upstreams: {}, routes: [], rateLimit: {} }), [])
})

t.test('single node, in memory', async (t) => {
  const memCtx = (): ClusterContext => createClusterContext({ name: 'sc' })

  await t.test('the node\'s own config is version 1 at once; a PUT applies through the watchers in order', async (t) => {
    const ctx = memCtx()
    const applied: Array<[number, number | undefined]> = []
    const rt = await SharedConfigRuntime.open({ config: nodeConfig('m1'), context: ctx, client: undefined, log: memLog(), onApplied: (v, p) => applied.push([v, p]) })
    t.teardown(async () => { await rt.close(); await ctx.close() })
    t.equal(rt.version, 1)
    t.same(applied, [[1, undefined]], 'onApplied at open, no propagation')
    t.same(rt.current().config, sharedOf(['file-1']))
    t.same((await rt.get()).version, 1, 'get() without Redis: the applied document')
    await rt.boot() // nothing to do without Redis
    t.equal(rt.version, 1)

    const order: string[] = []
    rt.watch((c) => { order.push(`first:${targetIds(c).join()}`) })
    const unwatch = rt.watch(async (c, doc) => { order.push(`second:${doc.version}:${c.node.id}`) })
    t.same(await rt.put(sharedOf(['put-1']), 1), { version: 2 })
    t.same(order, ['first:put-1', 'second:2:m1'], 'every watcher, in subscription order, with the effective config (node keys merged)')
    t.equal(rt.version, 2)
    t.same(rt.current().config, sharedOf(['put-1']))
    t.equal(applied.length, 2)
    t.equal(applied[1][0], 2)
    t.type(applied[1][1], 'number', 'a later apply reports its propagation')

    unwatch()
    await rt.put(sharedOf(['put-2']), 2)
    t.same(order.slice(2), ['first:put-2'], 'an unwatched watcher is not called')
  })

  await t.test('PUT validation: nothing stored, nothing applied', async (t) => {
    const ctx = memCtx()
    const rt = await SharedConfigRuntime.open({ config: nodeConfig('m2', { rateLimit: { onStoreError: 'fail_closed' } }), context: ctx, client: undefined, log: memLog() })
    t.teardown(async () => { await rt.close(); await ctx.close() })
    let calls = 0
    rt.watch(() => { calls++ })

    const shape = await rt.put({ ...sharedOf(['x']), node: { id: 'other' } } as never, 1).catch((e: unknown) => e)
    t.ok(shape instanceof ConfigError, 'a per-node key: ConfigError')
    t.same((shape as ConfigError).issues.map((i) => i.path), ['node'])

    const bad = await rt.put({ upstreams: { api: { targets: [{ id: 'x', url: 'ftp://nope' }] } } }, 1).catch((e: unknown) => e)
    t.ok(bad instanceof ConfigError, 'a schema error: ConfigError')

    const frozen = await rt.put({ ...sharedOf(['x']), rateLimit: { onStoreError: 'fail_open' } }, 1).catch((e: unknown) => e)
    t.ok(frozen instanceof ConfigError, 'a boot-only key changed: ConfigError')
    t.same((frozen as ConfigError).issues.map((i) => i.path), ['rateLimit.onStoreError'])

    t.same(await rt.put({ ...sharedOf(['x']), rateLimit: { onStoreError: 'fail_closed', default: { algorithm: 'fixed_window', limit: 5, window: '1s' } } }, 1), { version: 2 },
      'the same boot-only value with a new default: accepted')
    t.equal(calls, 1, 'only the valid document reached the watchers')
    const stale = await rt.put({ ...sharedOf(['y']), rateLimit: { onStoreError: 'fail_closed' } }, 1).catch((e: unknown) => e)
    t.equal((stale as GatewayError).code, 'FHG_ERR_CONFIG_CONFLICT', 'a stale ifMatch: conflict')
  })

  await t.test('a watcher that throws refuses the document: every part goes back to the running version', async (t) => {
    const ctx = memCtx()
    const log = memLog()
    const rt = await SharedConfigRuntime.open({ config: nodeConfig('m3'), context: ctx, client: undefined, log })
    t.teardown(async () => { await rt.close(); await ctx.close() })
    const seen: string[] = []
    rt.watch((c) => { seen.push(`a:${targetIds(c).join()}`) })
    rt.watch((c) => {
      seen.push(`b:${targetIds(c).join()}`)
      if (targetIds(c)[0] === 'boom') throw new Error('cannot switch')
    })
    const err = await rt.put(sharedOf(['boom']), 1).catch((e: unknown) => e)
    t.equal((err as GatewayError).code, 'FHG_ERR_CONFIG_NOT_APPLIED')
    t.match((err as Error).message, /cannot switch/)
    t.same(seen, ['a:boom', 'b:boom', 'a:file-1', 'b:file-1'], 'the new config to each, then the previous one to each')
    t.equal(rt.version, 1, 'still runs version 1')
    t.same(rt.refused, { version: 2, error: 'cannot switch' })
    t.ok(log.lines.some((l) => l.level === 'error' && /going back/.test(l.msg)))
    t.same(await rt.put(sharedOf(['ok']), 2), { version: 3 }, 'the next good one applies')
    t.equal(rt.refused, undefined, 'and clears refused')
  })
})

t.test('with a redis-server: boot precedence store -> snapshot -> file', async (t) => {
  const redis = await startRedis()
  const open: Array<{ rt: SharedConfigRuntime, ctx: ClusterContext, client: RedisClient }> = []
  t.teardown(async () => {
    for (const o of open) { await o.rt.close(); await o.ctx.close(); await closeRedisConnection(o.client) }
    await redis.stop()
  })
  const node = async (config: GatewayConfig, url = redis.url, bootWait = 2000): Promise<{ rt: SharedConfigRuntime, log: ReturnType<typeof memLog>, seen: string[][] }> => {
    const client = createRedisConnection(url, { commandTimeout: 1000 })
    client.on('error', () => {})
    const ctx = createClusterContext({ client, name: config.cluster.name, timeout: 1500 })
    const log = memLog()
    const rt = await SharedConfigRuntime.open({ config, context: ctx, client, log, bootWait })
    const seen: string[][] = []
    rt.watch((c) => { seen.push(targetIds(c)) })
    open.push({ rt, ctx, client })
    return { rt, log, seen }
  }

  const snapshotA = join(dir, 'a.snapshot.json')
  const a = await node(nodeConfig('a', { redis: redis.url, targets: ['a-file'], snapshot: snapshotA }))
  t.equal(a.rt.version, 0, 'before boot: the file, never stored')
  await a.rt.boot()
  t.equal(a.rt.version, 1, 'an empty store is seeded with the file')
  t.same(a.seen, [['a-file']])
  t.same((await a.rt.get()).config, sharedOf(['a-file']), 'get() reads the store')

  const b = await node(nodeConfig('b', { redis: redis.url, targets: ['b-file'] }))
  await b.rt.boot()
  t.equal(b.rt.version, 1)
  t.same(b.seen, [['a-file']], 'the store wins over a later node\'s file')

  t.same(await a.rt.put(sharedOf(['v2']), 1), { version: 2 })
  await until(() => b.rt.version === 2, 5000)
  t.same(b.seen.at(-1), ['v2'], 'another node applies a PUT')
  const stale = await b.rt.put(sharedOf(['late']), 1).catch((e: unknown) => e)
  t.equal((stale as GatewayError).code, 'FHG_ERR_CONFIG_CONFLICT')
  await until(async () => { try { return JSON.parse((await import('node:fs')).readFileSync(snapshotA, 'utf8')).version === 2 } catch { return false } }, 5000)

  // Redis unreachable at boot: the snapshot of the last applied config, else the file
  const deadPort = redis.port + 1 === 6379 ? redis.port + 2 : redis.port + 1
  const deadUrl = `redis://127.0.0.1:${deadPort}`
  const c = await node(nodeConfig('a', { redis: deadUrl, targets: ['a-file'], snapshot: snapshotA }), deadUrl, 300)
  await c.rt.boot()
  t.equal(c.rt.version, 2, 'Redis down: the snapshot is served')
  t.same(c.seen, [['v2']])
  t.ok(c.log.lines.some((l) => /serving the snapshot/.test(l.msg)))

  const emptySnap = join(dir, 'none.json')
  const d = await node(nodeConfig('d', { redis: deadUrl, targets: ['d-file'], snapshot: emptySnap }), deadUrl, 300)
  await d.rt.boot()
  t.equal(d.rt.version, 0, 'no snapshot: the file')
  t.same(d.seen, [], 'nothing applied: the node runs its file as booted')
  t.same((await d.rt.get()).config, sharedOf(['d-file']), 'get() while Redis is down: this node\'s own')

  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ version: 7, rev: 'x', config: { upstreams: { api: { targets: [{ id: 'z', url: 'ftp://x' }] } } }, updatedAt: 1 }))
  const e = await node(nodeConfig('e', { redis: deadUrl, targets: ['e-file'], snapshot: join(dir, 'bad.json') }), deadUrl, 300)
  await e.rt.boot()
  t.equal(e.rt.version, 0, 'an invalid snapshot is refused: the file')
  t.equal(e.rt.refused?.version, 7)
  t.ok(e.log.lines.some((l) => l.level === 'error' && /snapshot refused/.test(l.msg)))
})
