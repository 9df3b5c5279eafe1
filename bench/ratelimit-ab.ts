// Rate-limit cost per request inside ONE gateway process: the same node serves several route prefixes, each
// behind its own limiter setup (none, the hook with no limit, lease, lease without headers, exact, and the
// diagnostics below), and the load alternates between them. Process, JIT state, sockets and Redis connection
// are shared, so what differs between two prefixes is the limiter's work on that route alone, free of the
// several-% spread between two processes of the same code on this machine (bench/ratelimit.ts compares
// processes). The figures: CPU µs per request of the gateway process and req/s, each against the first path's
// run of the same round, median over rounds.
//   node --import tsx bench/ratelimit-ab.ts
// Env: BENCH_DURATION (s, 3), BENCH_ROUNDS (6), BENCH_CONNECTIONS (64), BENCH_RATE (req/s, 0: as fast as possible),
//      BENCH_PATHS=none,lease,... (default none,hook,lease,leasenh,exact; the first is the baseline),
//      BENCH_PROFILE=1 (one profiled run per path, compared with the first), BENCH_PIN=0.
import { fork } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import os from 'node:os'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import loadBalancer, { passThroughBodies } from '../plugins/load-balancer.js'
import metrics from '../plugins/metrics.js'
import rateLimit, { type RateLimitPluginOptions, type RouteRateLimit } from '../plugins/rate-limit.js'
import type { Decision, RateLimitStore } from '../lib/ratelimit/types.js'
import { startRedis } from '../test/helpers/redis.js'
import { pin, startChild, killAll, BenchChild, type ChildReply, type ChildRequest } from './lib/servers.js'
import { cpuMicros } from './lib/load.js'
import { fmt, median, table } from './lib/report.js'
import { Profiler } from './lib/profiler.js'
import { compare, readProfile } from './lib/cpuprofile.js'
import { join } from 'node:path'
import { COMMON_METHODS } from '../lib/routes/methods.js'

const env = process.env
const DURATION = Number(env.BENCH_DURATION ?? 3)
const ROUNDS = Number(env.BENCH_ROUNDS ?? 6)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64)
const RATE = Number(env.BENCH_RATE ?? 0)
const SELF = fileURLToPath(import.meta.url)
const METHODS = COMMON_METHODS
const BIG = { algorithm: 'sliding_window' as const, limit: 1_000_000_000, window: 60_000 }

interface ChildArgs { upstreams: string[], redis: string }
type Decided = Decision & { source?: undefined }
/**
 * One route prefix of the node: its limiter (none when `limiter` is absent), its limit, and extra headers an
 * onRequest hook sets (diagnostics; the value DYNAMIC is built per request as the limiter builds `RateLimit`).
 */
interface PathSetup {
  path: string
  about: string
  rule: RouteRateLimit
  limiter?: (a: ChildArgs, scope: FastifyInstance) => Partial<RateLimitPluginOptions>
  headers?: Record<string, string>
  /** Set `headers` on the raw ServerResponse (res.setHeader) instead of through reply.header. */
  raw?: boolean
}
const ALLOWED: Decided = { allowed: true, limit: BIG.limit, remaining: 1e8, resetMs: 60_000, retryAfterMs: 0 }

/** A store that answers every decision queued in one turn at once, when `later` calls back. */
function deferredStore (later: (answer: () => void) => void): RateLimitStore {
  let waiting: Array<() => void> = []
  const flush = (): void => { const w = waiting; waiting = []; for (const f of w) f() }
  return {
    consume: async () => await new Promise<Decision>((resolve) => {
      if (waiting.length === 0) setImmediate(() => later(flush))
      waiting.push(() => resolve(ALLOWED))
    }),
  }
}

const DEFAULT_PATHS = ['none', 'hook', 'lease', 'leasenh', 'exact']
const PATHS: PathSetup[] = [
  { path: 'none', about: 'no limiter', rule: [] },
  { path: 'hook', about: 'the limiter registered, no limit on the route', limiter: () => ({}), rule: [] },
  { path: 'lease', about: 'lease mode, sliding_window (as shipped: draft headers)', limiter: (a) => ({ redis: a.redis }), rule: { ...BIG, mode: 'lease' } },
  { path: 'leasenh', about: 'lease mode, headers: none', limiter: (a) => ({ redis: a.redis, headers: 'none' }), rule: { ...BIG, mode: 'lease' } },
  { path: 'exact', about: 'exact sliding_window in Redis (as shipped)', limiter: (a) => ({ redis: a.redis }), rule: BIG },
  // where exact mode's cost comes from: a store answering at once (a resolved promise); after this turn
  // (setImmediate); when a PING sent at the end of the turn comes back (Redis I/O, no script)
  { path: 'async0', about: 'a store that answers at once', limiter: () => ({ store: { consume: async () => ALLOWED } }), rule: BIG },
  { path: 'asyncI', about: 'a store that answers in the next turn', limiter: () => ({ store: deferredStore((answer) => answer()) }), rule: BIG },
  {
    path: 'asyncR',
    about: 'a store that answers when one PING per turn comes back',
    limiter: (a, scope) => {
      const r = new Redis(a.redis)
      scope.addHook('onClose', async () => { r.disconnect() })
      return { store: deferredStore((answer) => { void r.ping().then(answer) }) }
    },
    rule: BIG,
  },
  // what the headers cost: no limiter, an onRequest hook setting headers of lease's names and sizes
  { path: 'hdr', about: 'two static headers of the limiter\'s sizes', rule: [], headers: { 'ratelimit-policy': '"1000000000-per-1m";q=1000000000;w=60', ratelimit: '"1000000000-per-1m";r=999999999;t=60' } },
  { path: 'hdrD', about: 'the same, RateLimit built per request', rule: [], headers: { 'ratelimit-policy': '"1000000000-per-1m";q=1000000000;w=60', ratelimit: 'DYNAMIC' } },
  { path: 'hdrRaw', about: 'the two static headers through res.setHeader', rule: [], raw: true, headers: { 'ratelimit-policy': '"1000000000-per-1m";q=1000000000;w=60', ratelimit: '"1000000000-per-1m";r=999999999;t=60' } },
  { path: 'hdr1', about: 'one one-byte header', rule: [], headers: { 'x-a': '1' } },
  { path: 'hdr2', about: 'two one-byte headers', rule: [], headers: { 'x-a': '1', 'x-b': '2' } },
  { path: 'hdr1L', about: 'one header of both headers\' length', rule: [], headers: { 'x-a': '"1000000000-per-1m";q=1000000000;w=60, "1000000000-per-1m";r=999999999;t=60' } },
]

async function child (a: ChildArgs): Promise<void> {
  const app = Fastify({ logger: false })
  await app.register(metrics, {})
  await app.register(loadBalancer, {
    upstreams: { u: { strategy: 'round_robin', targets: a.upstreams.map((url, i) => ({ id: `up-${i + 1}`, url })) } },
  })
  for (const p of PATHS) {
    await app.register(async (scope) => {
      passThroughBodies(scope)
      // each limiter in its own scope: its onRequest hook runs on this prefix only
      if (p.limiter !== undefined) await scope.register(rateLimit, { ...p.limiter(a, scope), clusterName: 'ab', storeTimeout: 2000 })
      const h = p.headers
      if (h !== undefined) {
        const entries = Object.entries(h)
        let n = 999_999_999
        const raw = p.raw === true
        scope.addHook('onRequest', (_req, reply, done) => {
          for (const [k, v] of entries) {
            const value = v === 'DYNAMIC' ? `"1000000000-per-1m";r=${--n};t=60` : v
            if (raw) reply.raw.setHeader(k, value)
            else reply.header(k, value)
          }
          done()
        })
      }
      scope.route({
        method: METHODS as never, url: `/${p.path}/*`, exposeHeadRoute: false,
        config: { upstream: 'u', gatewayRoute: `/${p.path}`, rateLimit: p.rule },
        handler: (_req, reply) => reply.proxy(),
      })
    })
  }
  await app.listen({ host: '127.0.0.1', port: 0 })
  const send = (m: ChildReply): void => { process.send?.(m) }
  const profiler = new Profiler()
  process.on('message', (m: ChildRequest) => {
    if (m.op === 'exit') process.exit(0)
    const work = m.op === 'prof-start' ? profiler.start() : m.op === 'prof-stop' ? profiler.stop(m.arg!) : Promise.resolve(undefined)
    void work.then((files) => {
      const cpu = process.cpuUsage()
      const mem = process.memoryUsage()
      send({ id: m.id, files: files ?? undefined, stats: { cpuUser: cpu.user, cpuSystem: cpu.system, rss: mem.rss, heapUsed: mem.heapUsed, served: 0, sockets: 0, gcCount: 0, gcMs: 0, gcMajorCount: 0, gcMajorMs: 0 } })
    })
  })
  send({ type: 'ready', port: (app.server.address() as AddressInfo).port, info: 'ab' })
  process.on('disconnect', () => process.exit(0))
}

async function main (): Promise<void> {
  const autocannon = createRequire(import.meta.url)('autocannon') as (o: Record<string, unknown>) => Promise<{ requests: { total: number }, non2xx: number, errors: number }>
  const only = env.BENCH_PATHS?.split(',')
  const paths = PATHS.filter((p) => (only ?? DEFAULT_PATHS).includes(p.path))
  const redis = await startRedis()
  const upstreams = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const proc = fork(SELF, ['--child', JSON.stringify({ upstreams: upstreams.map((u) => u.url), redis: redis.url })], {
    execArgv: ['--no-allocation-site-pretenuring', '--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...env, NODE_ENV: 'production' },
  })
  const gw = await new Promise<BenchChild>((resolve, reject) => {
    proc.once('exit', (c) => reject(new Error(`gateway exited ${c}`)))
    proc.on('message', (m: ChildReply) => { if ('type' in m && m.type === 'ready') resolve(new BenchChild('gateway', proc, m.port, m.info)) })
  })
  const last = os.cpus().length - 1
  const others = last === 1 ? '0' : `0-${last - 1}`
  for (const pid of [process.pid, redis.pid, ...upstreams.map((u) => u.pid)]) pin(pid, others)
  pin(gw.pid, String(last))
  const res: Record<string, { cpu: number[], rps: number[], pct: number[] }> = {}
  try {
    for (const p of paths) {
      res[p.path] = { cpu: [], rps: [], pct: [] }
      const r = await fetch(`${gw.url}/${p.path}/x`)
      if (r.status !== 200) throw new Error(`${p.path}: ${r.status} ${await r.text()}`)
      await autocannon({ url: `${gw.url}/${p.path}/x`, connections: CONNECTIONS, duration: 2 })
    }
    console.log(`ratelimit A/B ${new Date().toISOString()}; ${ROUNDS} rounds x ${DURATION} s per path, ${RATE > 0 ? `${RATE} req/s` : 'max rate'}; load ${os.loadavg()[0].toFixed(2)}`)
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? paths : [...paths].reverse()
      const line: string[] = []
      for (const p of order) {
        const before = cpuMicros(await gw.stats())
        const t0 = process.hrtime.bigint()
        const o: Record<string, unknown> = { url: `${gw.url}/${p.path}/x`, connections: CONNECTIONS, duration: DURATION }
        if (RATE > 0) o.overallRate = RATE
        const r = await autocannon(o)
        const s = Number(process.hrtime.bigint() - t0) / 1e9
        const used = cpuMicros(await gw.stats()) - before
        const cpu = used / r.requests.total
        res[p.path].pct.push(used / (s * 1e4))
        if (r.non2xx + r.errors > 0) line.push(`!!${r.non2xx + r.errors} bad`)
        res[p.path].cpu.push(cpu)
        res[p.path].rps.push(r.requests.total / s)
        line.push(`${p.path} ${fmt(r.requests.total / s)}/s ${cpu.toFixed(1)}µs`)
      }
      console.log(`round ${round + 1}: ${line.join('  ')}  [load ${os.loadavg()[0].toFixed(2)}]`)
    }
    // each figure against the first path's run of the same round, then the median over rounds
    const base = res[paths[0].path]
    const diff = (x: number[], b: number[]): number => median(x.map((v, i) => v - b[i]))
    const ratio = (x: number[], b: number[]): number => median(x.map((v, i) => v / b[i]))
    console.log('\n' + table(['path', 'setup', 'req/s median', 'CPU µs/req median', 'gateway CPU % median', `CPU − ${paths[0].path}, same round (µs, median)`, `req/s × ${paths[0].path}, same round (median)`],
      paths.map((p) => {
        const x = res[p.path]
        return [p.path, p.about, fmt(median(x.rps)), median(x.cpu).toFixed(1), median(x.pct).toFixed(0), diff(x.cpu, base.cpu).toFixed(1), ratio(x.rps, base.rps).toFixed(3)]
      })))
    if (env.BENCH_PROFILE === '1') {
      // one profiled run per path; each compared with the first path's (where the extra µs per request go)
      const dir = mkdtempSync(join(os.tmpdir(), 'fhg-rl-ab-'))
      const got: Array<{ name: string, b: ReturnType<typeof readProfile>, requests: number }> = []
      for (const p of paths) {
        await gw.profileStart()
        const r = await autocannon({ url: `${gw.url}/${p.path}/x`, connections: CONNECTIONS, duration: DURATION * 2 })
        const files = await gw.profileStop(join(dir, p.path))
        got.push({ name: p.path, b: readProfile(files[0]), requests: r.requests.total })
      }
      for (const g of got.slice(1)) console.log('\n' + compare(g, got[0], 30))
    }
  } finally {
    await gw.stop()
    await Promise.all(upstreams.map(async (u) => await u.stop()))
    await redis.stop()
  }
}

if (process.argv[2] === '--child') await child(JSON.parse(process.argv[3]) as ChildArgs)
else {
  try { await main() } catch (err) { console.error(err); process.exitCode = 1 } finally { killAll() }
}
