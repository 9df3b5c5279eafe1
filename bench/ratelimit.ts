// Rate-limit overhead benchmark (issue 5): in one run, rounds alternating, over the same two upstreams and one Redis:
//   bare @fastify/reply-from; the gateway with no limit; the gateway + exact Redis sliding window (as shipped: the
//   decisions of one event-loop turn in one script call; also with the client's writes coalesced per turn; and
//   unbatched, one script call per request with writes coalesced: the previous default); the gateway + lease mode;
//   bare reply-from + @fastify/rate-limit with its Redis store.
//   node --import tsx bench/ratelimit.ts
// Env: BENCH_DURATION (s, 4), BENCH_ROUNDS (5), BENCH_WARMUP (s, 4), BENCH_CONNECTIONS (64);
//      BENCH_PIN=0: do not pin (default: proxies on the last CPU, everything else on the others, as PEERS.md's final run);
//      BENCH_RATE=<req/s>: a fixed request rate instead of as fast as possible; then compare CPU µs/req, which a
//      loaded machine disturbs far less than throughput;
//      BENCH_ROLES=gateway,exact,...: run only these setups (gateway is always in); diagnostic setups, run only when
//        named: gateway-twin (a second no-limit process: the process-to-process spread), gateway-hook (limiter, no
//        limit), gateway-hook-redis (the same with its Redis connection), memory (in-memory sliding window),
//        lease-no-headers, lease-free (the lease process, loaded on a route with no limit);
//      BENCH_CONCURRENT=1: each setup runs at the same time as the no-limit gateway, both on the proxy CPU, so the
//        scheduler gives each half of it: the req/s ratio is the ratio of CPU per request, and what else loads the
//        machine meanwhile loads both alike (pairs spread ~±2 % instead of ~±15 %);
//      BENCH_FRESH=1: new processes and a new warm-up for every round;
//      BENCH_PREWARM=<s>: unmeasured load on a setup right before each of its measured runs (default 2; 0: none, as
//        before session 3: then setups idle for tens of seconds between their runs came back cold and read 5-20 % slow);
//      BENCH_PROFILE=1 (or --profile): then one profiled run each of `exact`, `lease` and `gateway`, and where the µs go.
//   node --import tsx bench/ratelimit.ts --store: the store alone, CPU µs per decision, batched vs one call each.
// Redis calls per request: script calls (EVAL/EVALSHA, from INFO commandstats) over each run / requests answered.
import { fork, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import replyFrom from '@fastify/reply-from'
import { Redis } from 'ioredis'
import { cpuMicros, load, measure, type RunResult } from './lib/load.js'
import { fmt, median, table } from './lib/report.js'
import { BenchChild, CAN_PIN, pin, startChild, killAll, type ChildReply, type ChildRequest, type ChildStats } from './lib/servers.js'
import { GcMeter, Profiler } from './lib/profiler.js'
import { compare, readProfile } from './lib/cpuprofile.js'
import { mkdtempSync } from 'node:fs'
import { join } from 'node:path'
import { BODY } from './lib/upstream.js'
import loadBalancer, { passThroughBodies } from '../plugins/load-balancer.js'
import metrics from '../plugins/metrics.js'
import rateLimit, { type RouteRateLimit } from '../plugins/rate-limit.js'
import { RedisStore } from '../lib/ratelimit/redis-store.js'
import { StoreGuard } from '../lib/ratelimit/outage.js'
import { createRedisConnection } from '../lib/cluster/redis-connection.js'
import { startRedis } from '../test/helpers/redis.js'
import { COMMON_METHODS } from '../lib/routes/methods.js'

const env = process.env
const DURATION = Number(env.BENCH_DURATION ?? 4)
const ROUNDS = Number(env.BENCH_ROUNDS ?? 5)
const WARMUP = Number(env.BENCH_WARMUP ?? 4)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64)
const RATE = Number(env.BENCH_RATE ?? 0)
// BENCH_CONCURRENT=1: each setup runs at the same time as the no-limit gateway, both pinned to the same CPU
const CONCURRENT = env.BENCH_CONCURRENT === '1'
// BENCH_FRESH=1: new processes (and a new warm-up) for every round: a process keeps what its JIT made of its warm-up
// (and its memory layout) for life, which shifts one process against another by several % on this machine
const FRESH = env.BENCH_FRESH === '1'
// s of unmeasured load right before each measured run (0: none)
const PREWARM = Number(env.BENCH_PREWARM ?? 2)
// PEERS.md's pinned layout: the proxy under test alone on the last CPU; load generator, upstreams and Redis on the others
const PIN = CAN_PIN
const PROFILE = process.argv.includes('--profile') || env.BENCH_PROFILE === '1'
const SELF = fileURLToPath(import.meta.url)
const METHODS = COMMON_METHODS
// never reached in a run: every request is decided, none refused (a 429 would be cheaper than a proxied answer)
const BIG = { limit: 1_000_000_000, window: 60_000 }

type Role = 'reply-from' | 'gateway' | 'gateway-twin' | 'lease-free' | 'gateway-hook' | 'gateway-hook-redis' | 'memory' | 'exact' | 'exact-coalesce' | 'exact-unbatched' | 'lease' | 'lease-no-headers' | 'fastify-rate-limit'
const ROLES: Role[] = ['reply-from', 'gateway', 'gateway-twin', 'lease-free', 'gateway-hook', 'gateway-hook-redis', 'memory', 'exact', 'exact-coalesce', 'exact-unbatched', 'lease', 'lease-no-headers', 'fastify-rate-limit']
/** Diagnostic setups: run only when BENCH_ROLES names them. */
const OPTIONAL_ROLES: Role[] = ['gateway-twin', 'lease-free', 'gateway-hook', 'gateway-hook-redis', 'memory', 'lease-no-headers']
interface ChildArgs { upstreams: string[], redis: string }

// ---------------------------------------------------------------- the setups, each in its own child process

async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as AddressInfo).port
}

/** The gateway as plugins/gateway.ts builds it (metrics, load balancer, one catch-all route), plus the limiter when asked. */
async function gateway (a: ChildArgs, limit: { rule: RouteRateLimit, coalesceWrites: boolean, unbatched?: boolean, headers?: 'none', memory?: boolean } | undefined, hookOnly = false): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(metrics, {})
  await app.register(loadBalancer, {
    upstreams: { u: { strategy: 'round_robin', targets: a.upstreams.map((url, i) => ({ id: `up-${i + 1}`, url })) } },
  })
  // a deadline no loaded run reaches: every request is decided in Redis, none passes by fail_open
  if (limit?.unbatched === true) {
    // one script call per decision, on a client that coalesces its writes per turn (the store as first shipped)
    const client = createRedisConnection(a.redis, { commandTimeout: 4000, coalesceWrites: true })
    await app.register(rateLimit, { redis: client, clusterName: 'bench', storeTimeout: 2000, store: new RedisStore({ client, timeout: 2000, maxBatch: 1 }) })
  } else if (limit?.memory === true) {
    await app.register(rateLimit, { clusterName: 'bench', headers: limit.headers })
  } else if (limit !== undefined) {
    await app.register(rateLimit, { redis: a.redis, clusterName: 'bench', coalesceWrites: limit.coalesceWrites, storeTimeout: 2000, headers: limit.headers })
  } else if (hookOnly) {
    // the limiter registered (its onRequest hook runs) but this route has no limit: what the gateway node pays
    await app.register(rateLimit, { clusterName: 'bench' })
  }
  await app.register(async (scope) => {
    passThroughBodies(scope)
    for (const url of ['/', '/*']) {
      scope.route({
        method: [...METHODS], url, exposeHeadRoute: false,
        config: { upstream: 'u', gatewayRoute: '/', rateLimit: limit?.rule ?? [] },
        handler: (_req, reply) => reply.proxy(),
      })
    }
    // the same, never limited (role lease-free loads it)
    scope.route({
      method: [...METHODS], url: '/free/*', exposeHeadRoute: false,
      config: { upstream: 'u', gatewayRoute: '/free', rateLimit: [] },
      handler: (_req, reply) => reply.proxy(),
    })
  })
  return app
}

/** Bare reply-from as PEERS.md ran it (no base, round robin in getUpstream), optionally behind @fastify/rate-limit + Redis. */
async function replyFromApp (a: ChildArgs, withRateLimit: boolean): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  if (withRateLimit) {
    // loaded untyped: its `config.rateLimit` typing would clash with this project's
    const plugin = createRequire(import.meta.url)('@fastify/rate-limit') as never
    await app.register(plugin, { max: BIG.limit, timeWindow: BIG.window, redis: new Redis(a.redis, { connectTimeout: 500, maxRetriesPerRequest: 1 }) })
  }
  await app.register(replyFrom, { disableRequestLogging: true })
  let next = 0
  const fromOptions = {
    getUpstream (): string {
      const origin = a.upstreams[next]
      next = next + 1 === a.upstreams.length ? 0 : next + 1
      return origin
    },
    retryDelay (): null { return null },
  }
  for (const url of ['/', '/*']) {
    app.route({ method: [...METHODS], url, exposeHeadRoute: false, handler: (_req, reply) => reply.from(undefined, fromOptions) })
  }
  return app
}

async function buildRole (role: Role, a: ChildArgs): Promise<FastifyInstance> {
  const sliding = { algorithm: 'sliding_window' as const, ...BIG }
  switch (role) {
    case 'reply-from': return await replyFromApp(a, false)
    case 'fastify-rate-limit': return await replyFromApp(a, true)
    case 'gateway': return await gateway(a, undefined)
    case 'gateway-twin': return await gateway(a, undefined)
    case 'lease-free': return await gateway(a, { rule: { ...sliding, mode: 'lease' }, coalesceWrites: false })
    case 'gateway-hook': return await gateway(a, undefined, true)
    case 'gateway-hook-redis': return await gateway(a, { rule: [], coalesceWrites: false })
    case 'memory': return await gateway(a, { rule: sliding, coalesceWrites: false, memory: true })
    case 'exact': return await gateway(a, { rule: sliding, coalesceWrites: false })
    case 'exact-coalesce': return await gateway(a, { rule: sliding, coalesceWrites: true })
    case 'exact-unbatched': return await gateway(a, { rule: sliding, coalesceWrites: true, unbatched: true })
    case 'lease': return await gateway(a, { rule: { ...sliding, mode: 'lease' }, coalesceWrites: false })
    case 'lease-no-headers': return await gateway(a, { rule: { ...sliding, mode: 'lease' }, coalesceWrites: false, headers: 'none' })
  }
}

async function child (role: Role, a: ChildArgs): Promise<void> {
  const gc = new GcMeter()
  const profiler = new Profiler()
  const reply = (m: ChildReply): void => { process.send?.(m) }
  const stats = (): ChildStats => {
    const cpu = process.cpuUsage()
    const mem = process.memoryUsage()
    return { cpuUser: cpu.user, cpuSystem: cpu.system, rss: mem.rss, heapUsed: mem.heapUsed, served: 0, sockets: 0, gcCount: gc.count, gcMs: gc.ms, gcMajorCount: gc.majorCount, gcMajorMs: gc.majorMs }
  }
  try {
    const app = await buildRole(role, a)
    const port = await listen(app)
    process.on('message', (m: ChildRequest) => {
      if (m.op === 'exit') process.exit(0)
      if (m.op === 'gc') (globalThis as { gc?: () => void }).gc?.()
      const work = m.op === 'prof-start' ? profiler.start() : m.op === 'prof-stop' ? profiler.stop(m.arg ?? `bench-${role}`) : Promise.resolve(undefined)
      work.then((files) => { reply({ id: m.id, stats: stats(), files: files ?? undefined }) },
        (err: Error) => { reply({ id: m.id, stats: stats(), error: err.message }) })
    })
    reply({ type: 'ready', port, info: role })
  } catch (err) {
    reply({ type: 'error', message: (err as Error).stack ?? String(err) })
    process.exitCode = 1
  }
  process.on('disconnect', () => process.exit(0))
}

// ---------------------------------------------------------------- the parent

const mine = new Set<ChildProcess>()
function killMine (): void { for (const p of mine) p.kill('SIGKILL') }

async function startRole (role: Role, a: ChildArgs): Promise<BenchChild> {
  const proc = fork(SELF, ['--child', role, JSON.stringify(a)], {
    // every setup with the flag the CLI sets (lib/v8-tuning.ts), so the comparison is of the code, not of V8 tuning
    execArgv: ['--expose-gc', '--no-allocation-site-pretenuring', '--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, NODE_ENV: 'production' },
  })
  mine.add(proc)
  proc.once('exit', () => mine.delete(proc))
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`${role} did not start in 30 s`)) }, 30_000)
    proc.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`${role} exited early (${code ?? signal})`)) })
    proc.on('message', function onReady (m: ChildReply) {
      if (!('type' in m)) return
      clearTimeout(timer)
      proc.off('message', onReady)
      if (m.type === 'ready') resolve(new BenchChild(role, proc, m.port, m.info, role === 'lease-free' ? '/free/x' : ''))
      else { proc.kill('SIGKILL'); reject(new Error(`${role}: ${m.message}`)) }
    })
  })
}

interface Setup { role: Role, label: string, child: BenchChild, runs: RunResult[], calls: number[], redisCpu: number[], vsGateway: Array<{ rps: number, cpu: number }> }

const LABELS: Record<Role, string> = {
  'reply-from': 'bare @fastify/reply-from',
  gateway: 'gateway, no limit',
  exact: 'gateway + exact sliding_window in Redis (as shipped: one script call per event-loop turn)',
  'exact-coalesce': 'gateway + exact sliding_window, batched, client writes coalesced per turn',
  'exact-unbatched': 'gateway + exact sliding_window, one script call per request, writes coalesced (before)',
  lease: 'gateway + lease mode (sliding_window)',
  'lease-no-headers': 'gateway + lease mode, headers: none (diagnostic)',
  'lease-free': 'the lease-mode process, on a route with no limit (diagnostic)',
  'gateway-twin': 'gateway, no limit, a second process (diagnostic: process-to-process spread)',
  'gateway-hook-redis': 'gateway + the limiter registered with its Redis connection, no limit on the route (diagnostic)',
  memory: 'gateway + sliding_window in memory, no Redis (diagnostic)',
  'gateway-hook': 'gateway + the limiter registered, no limit on the route (diagnostic)',
  'fastify-rate-limit': 'reply-from + @fastify/rate-limit, Redis store',
}

function conditions (): string {
  return `load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`
}

/** Redis's own CPU so far, µs (user + sys): it shares the machine, so it is part of a Redis-backed limit's cost. */
async function redisCpu (r: Redis): Promise<number> {
  const info = await r.info('cpu')
  const v = (k: string): number => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(info)?.[1] ?? NaN)
  return 1e6 * (v('used_cpu_user') + v('used_cpu_sys'))
}

/** Script calls served so far (EVAL, EVALSHA): one per limiter call; the commands a script runs inside are not counted. */
async function scriptCalls (r: Redis): Promise<number> {
  const info = await r.info('commandstats')
  let n = 0
  for (const m of info.matchAll(/^cmdstat_(?:eval|evalsha|eval_ro|evalsha_ro|fcall):calls=(\d+)/gm)) n += Number(m[1])
  return n
}

async function main (): Promise<void> {
  const acVersion = (createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version
  console.log(`rate-limit bench ${new Date().toISOString()}  node ${process.version}  ${os.cpus().length} CPUs  autocannon ${acVersion}`)
  console.log(`${ROUNDS} rounds x ${DURATION} s, warm-up ${WARMUP} s, ${CONNECTIONS} connections, all requests from one client IP; ${conditions()}`)
  const redis = await startRedis()
  const admin = new Redis(redis.port, '127.0.0.1')
  const upstreams = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const last = os.cpus().length - 1
  const others = last === 1 ? '0' : `0-${last - 1}`
  for (const pid of [process.pid, redis.pid, ...upstreams.map((u) => u.pid)]) pin(pid, others)
  const args: ChildArgs = { upstreams: upstreams.map((u) => u.url), redis: redis.url }
  const only = env.BENCH_ROLES?.split(',').map((x) => x.trim())
  const roles = ROLES.filter((r) => (only === undefined && !OPTIONAL_ROLES.includes(r)) || r === 'gateway' || only?.includes(r) === true)
  const setups: Setup[] = []
  for (const role of roles) setups.push({ role, label: LABELS[role], child: await startRole(role, args), runs: [], calls: [], redisCpu: [], vsGateway: [] })
  if (PIN) console.log(`pinned: each proxy on CPU ${last}; load generator, upstreams and Redis on CPU ${others} (BENCH_PIN=0 to not pin)`)
  /** Pin, check and warm up every setup's process (all of them new when `restart`). */
  const prepare = async (restart: boolean): Promise<void> => {
    if (restart) {
      await Promise.all(setups.map(async (s) => await s.child.stop()))
      for (const s of setups) s.child = await startRole(s.role, args)
    }
    for (const s of setups) pin(s.child.pid, String(last))
    for (const s of setups) {
      const res = await fetch(s.child.url + '/bench')
      const text = await res.text()
      if (res.status !== 200 || text !== BODY) throw new Error(`${s.role}: unexpected answer ${res.status} ${text.slice(0, 200)}`)
      await load({ url: s.child.url, connections: CONNECTIONS, duration: WARMUP })
    }
    console.log(`warm-up done${restart ? ' (new processes)' : ''}; ${conditions()}`)
  }
  try {
    await prepare(false)
    // every setup runs right next to a run of the no-limit gateway (before or after it, alternating), so each
    // ratio compares two runs seconds apart: this shared machine's load drifts over tens of seconds
    const gw = by(setups, 'gateway')
    const others = setups.filter((s) => s !== gw)
    const run1 = async (s: Setup): Promise<RunResult> =>
      RATE > 0 ? await measureAtRate(s.child, RATE) : await measure(s.child, { url: s.child.url, connections: CONNECTIONS, duration: DURATION })
    // A setup idle while the others ran (tens of seconds in a full roster) comes back cold, while the no-limit
    // gateway, in every pair, never cools: unmeasured load right before each measured run makes both sides hot.
    const prewarm = async (s: Setup): Promise<void> => {
      if (PREWARM > 0) await load({ url: s.child.url, connections: CONNECTIONS, duration: PREWARM })
    }
    const record = (s: Setup, r: number, run: RunResult, calls: number, cpu: number): void => {
      s.runs.push(run)
      s.calls.push(calls)
      s.redisCpu.push(cpu)
      console.log(`round ${r + 1}/${ROUNDS} ${s.role.padEnd(18)} ${fmt(run.rps).padStart(7)} req/s  p50 ${run.p50} ms  p99 ${run.p99} ms  ` +
        `${fmt(run.cpuPerReq, 1)} µs CPU/req  CPU ${run.cpuPct.toFixed(0)}%  GC ${run.gcPerReq.toFixed(1)} µs/req  Redis calls/req ${calls.toFixed(3)}${run.bad > 0 ? `  !! ${run.bad} errors/non-2xx` : ''}  [${conditions()}]`)
    }
    const one = async (s: Setup, r: number): Promise<RunResult> => {
      await prewarm(s)
      const before = await scriptCalls(admin)
      const cpu0 = await redisCpu(admin)
      const run = await run1(s)
      record(s, r, run, (await scriptCalls(admin) - before) / run.completed, (await redisCpu(admin) - cpu0) / run.completed)
      return run
    }
    /** Both at once, on the same CPU: the scheduler gives each half of it, so the req/s ratio is the ratio of CPU per request, and whatever else loads the machine meanwhile loads both alike. */
    const both = async (s: Setup, r: number): Promise<void> => {
      await Promise.all([prewarm(s), prewarm(gw)])
      const before = await scriptCalls(admin)
      const cpu0 = await redisCpu(admin)
      const [a, b] = await Promise.all([run1(s), run1(gw)])
      const calls = (await scriptCalls(admin) - before) / a.completed
      const rcpu = (await redisCpu(admin) - cpu0) / a.completed
      record(s, r, a, calls, rcpu)
      record(gw, r, b, 0, 0)
      s.vsGateway.push({ rps: a.rps / b.rps, cpu: a.cpuPerReq / b.cpuPerReq })
    }
    for (let r = 0; r < ROUNDS; r++) {
      if (FRESH && r > 0) await prepare(true)
      for (let k = 0; k < others.length; k++) {
        const s = others[(r + k) % others.length]
        if (CONCURRENT) { await both(s, r); continue }
        const gwFirst = (r + k) % 2 === 0
        const a = gwFirst ? await one(gw, r) : undefined
        const run = await one(s, r)
        const b = a ?? await one(gw, r)
        s.vsGateway.push({ rps: run.rps / b.rps, cpu: run.cpuPerReq / b.cpuPerReq })
      }
    }
    report(setups)
    for (const s of setups.filter((x) => ['exact', 'exact-coalesce', 'exact-unbatched', 'lease'].includes(x.role))) {
      const text = await (await fetch(s.child.url + '/metrics')).text()
      const lines = text.split('\n').filter((l) => /^ratelimit_(decisions_total|store_errors_total) /.test(l) || /^ratelimit_decisions_total\{/.test(l))
      console.log(`${s.role}: ${lines.join('; ')}`)
    }
    if (PROFILE) {
      for (const role of ['exact', 'lease'] as const) if (has(setups, role)) await profile(by(setups, role), by(setups, 'gateway'))
    }
  } finally {
    admin.disconnect()
    await Promise.all(setups.map(async (s) => await s.child.stop()))
    await Promise.all(upstreams.map(async (u) => await u.stop()))
    await redis.stop()
  }
}

/** One run at a fixed overall rate: what the child's CPU spends per request when it is not saturated. */
async function measureAtRate (child: BenchChild, rate: number): Promise<RunResult> {
  const autocannon = createRequire(import.meta.url)('autocannon') as (o: Record<string, unknown>) => Promise<{
    requests: { total: number }, latency: { p50: number, p99: number }, errors: number, timeouts: number, non2xx: number
  }>
  const before = await child.stats()
  const t0 = process.hrtime.bigint()
  const r = await autocannon({ url: child.url, connections: CONNECTIONS, overallRate: rate, duration: DURATION, pipelining: 1, timeout: 10 })
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const after = await child.stats()
  const cpu = cpuMicros(after) - cpuMicros(before)
  const completed = r.requests.total
  return {
    rps: completed / seconds, p50: r.latency.p50, p99: r.latency.p99, completed, bad: r.errors + r.timeouts + r.non2xx, seconds,
    cpuPerReq: cpu / completed, gcPerReq: 1000 * (after.gcMs - before.gcMs) / completed, cpuPct: cpu / (seconds * 1e4), loadGenPct: NaN,
  }
}

function by (setups: Setup[], role: Role): Setup { return setups.find((s) => s.role === role)! }
function has (setups: Setup[], role: Role): boolean { return setups.some((s) => s.role === role) }

/** One more run of each under the inspector's profiler: where the exact limiter's µs per request go. */
async function profile (a: Setup, b: Setup): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'fhg-rl-prof-'))
  const got: Array<{ name: string, files: string[], requests: number }> = []
  for (const s of [a, b]) {
    await s.child.profileStart()
    const run = await measure(s.child, { url: s.child.url, connections: CONNECTIONS, duration: DURATION })
    got.push({ name: s.role, files: await s.child.profileStop(join(dir, s.role)), requests: run.completed })
    console.log(`profiled ${s.role}: ${fmt(run.rps)} req/s, ${fmt(run.cpuPerReq, 1)} µs CPU/req (profiler on)`)
  }
  console.log('\n' + compare({ name: got[0].name, b: readProfile(got[0].files[0]), requests: got[0].requests },
    { name: got[1].name, b: readProfile(got[1].files[0]), requests: got[1].requests }))
}

function report (setups: Setup[]): void {
  const m = (s: Setup, f: (r: RunResult) => number): number => median(s.runs.map(f))
  const gw = by(setups, 'gateway')
  // × gateway from adjacent pairs; × reply-from as the ratio of two such figures
  const vs = (s: Setup, k: 'rps' | 'cpu'): number => s === gw ? 1 : median(s.vsGateway.map((x) => x[k]))
  const vsRole = (role: Role): number => has(setups, role) ? vs(by(setups, role), 'rps') : NaN
  const rfVs = vsRole('reply-from')
  const rows = setups.map((s) => [
    s.label,
    fmt(m(s, (r) => r.rps)), (vs(s, 'rps') / rfVs).toFixed(2), vs(s, 'rps').toFixed(2),
    `${m(s, (r) => r.p50)} / ${m(s, (r) => r.p99)}`,
    fmt(m(s, (r) => r.cpuPerReq), 1), vs(s, 'cpu').toFixed(2),
    median(s.calls).toFixed(3),
    median(s.redisCpu).toFixed(1),
  ])
  console.log(`\n${ROUNDS} rounds of ${DURATION} s runs, ${CONNECTIONS} connections; ratios are medians of each run against the gateway run beside it:\n`)
  console.log(table(['setup', 'req/s (median)', '× reply-from', '× gateway', 'p50 / p99 ms', 'CPU µs/req', 'CPU × gateway', 'Redis calls/req', 'Redis CPU µs/req'], rows))
  for (const s of setups) {
    if (s === gw) continue
    console.log(`${s.role}: × gateway per pair ${s.vsGateway.map((x) => x.rps.toFixed(2)).join(', ')}; CPU × gateway ${s.vsGateway.map((x) => x.cpu.toFixed(2)).join(', ')}`)
  }
  const exact = vsRole('exact')
  const lease = vsRole('lease')
  const frl = vsRole('fastify-rate-limit')
  const checks: Array<[string, number, number]> = [
    ['exact ≥ 0.85× gateway', exact, 0.85],
    ['lease ≥ 0.95× gateway', lease, 0.95],
    ['exact ahead of reply-from + @fastify/rate-limit + Redis', exact / frl, 1],
    ['lease ahead of reply-from + @fastify/rate-limit + Redis', lease / frl, 1],
  ]
  console.log('')
  for (const [what, x, goal] of checks) if (!Number.isNaN(x)) console.log(`CHECK ${what} (req/s): ${x.toFixed(3)} → ${x >= goal ? 'PASS' : 'FAIL'}`)
  console.log(`gateway / bare reply-from: ${(1 / rfVs).toFixed(3)}; @fastify/rate-limit + Redis / bare reply-from: ${(frl / rfVs).toFixed(3)}; ` +
    `exact, client writes coalesced / gateway: ${vsRole('exact-coalesce').toFixed(3)}; ` +
    `exact, one script call per request / gateway: ${vsRole('exact-unbatched').toFixed(3)}`)
  const bad = setups.reduce((n, s) => n + s.runs.reduce((a, r) => a + r.bad, 0), 0)
  if (bad > 0) console.log(`!! ${bad} errors, timeouts or non-2xx answers over all runs`)
}

/**
 * --store: the limiter's own cost without HTTP, CPU µs of this process per decision: `perTurn` decisions per
 * event-loop turn through the outage guard and RedisStore, batched (one script call per turn) and one script call
 * per decision (on a client coalescing its writes, as before), alternating. CPU time shifts far less than req/s
 * when other jobs load the machine.
 */
async function storeCost (): Promise<void> {
  const redis = await startRedis()
  const rule = { algorithm: 'sliding_window' as const, ...BIG }
  const key = 'bench:rl:/:0:{0123456789abcdef}'
  const variants = [
    { label: 'batched (as shipped)', coalesce: false, maxBatch: 128 },
    { label: 'one script call per decision, writes coalesced (before)', coalesce: true, maxBatch: 1 },
  ]
  const clients = variants.map((v) => createRedisConnection(redis.url, { commandTimeout: 4000, coalesceWrites: v.coalesce }))
  try {
    await Promise.all(clients.map(async (c) => { if (c.status !== 'ready') await new Promise((resolve) => c.once('ready', resolve)) }))
    const stores = variants.map((v, i) => new RedisStore({ client: clients[i], timeout: 2000, maxBatch: v.maxBatch }))
    console.log(`rate-limit store cost ${new Date().toISOString()}  node ${process.version}; ${conditions()}`)
    for (const perTurn of [1, 8, 32]) {
      const cpu: number[][] = variants.map(() => [])
      const calls: number[] = variants.map(() => 0)
      for (let round = 0; round < 5; round++) {
        for (let v = 0; v < variants.length; v++) {
          const guard = new StoreGuard({})
          const n = 20_000
          const calls0 = stores[v].calls
          const c0 = process.cpuUsage()
          for (let i = 0; i < n; i += perTurn) {
            const turn: Array<Promise<unknown>> = []
            for (let j = 0; j < perTurn; j++) turn.push(guard.consume(stores[v], key, rule, 1))
            await Promise.all(turn)
          }
          const c = process.cpuUsage(c0)
          if (round > 0) cpu[v].push((c.user + c.system) / n) // round 0 warms up
          calls[v] = (stores[v].calls - calls0) / n
        }
      }
      for (let v = 0; v < variants.length; v++) {
        console.log(`${perTurn} decisions per turn, ${variants[v].label}: ${fmt(median(cpu[v]), 2)} µs CPU/decision (runs ${cpu[v].map((x) => x.toFixed(1)).join(', ')}), ` +
          `${calls[v].toFixed(3)} Redis calls/decision`)
      }
    }
    console.log(conditions())
  } finally {
    for (const c of clients) c.disconnect()
    await redis.stop()
  }
}

if (process.argv[2] === '--child') {
  await child(process.argv[3] as Role, JSON.parse(process.argv[4]) as ChildArgs)
} else {
  try {
    if (process.argv.includes('--store')) await storeCost()
    else await main()
  } catch (err) {
    console.error(err)
    process.exitCode = 1
  } finally {
    killMine()
    killAll()
  }
}
