// Rate-limit overhead benchmark (issue 5): in one run, rounds alternating, over the same two upstreams and one Redis:
//   bare @fastify/reply-from; the gateway with no limit; the gateway + exact Redis sliding window (as shipped: writes
//   coalesced per event-loop turn; and with one write per command; and with ioredis auto-pipelining); the gateway + lease mode; bare reply-from + @fastify/rate-limit with its Redis store.
//   node --import tsx bench/ratelimit.ts
// Env: BENCH_DURATION (s, 4), BENCH_ROUNDS (5), BENCH_WARMUP (s, 4), BENCH_CONNECTIONS (64);
//      BENCH_PIN=0: do not pin (default: proxies on the last CPU, everything else on the others, as PEERS.md's final run);
//      BENCH_RATE=<req/s>: a fixed request rate instead of as fast as possible; then compare CPU µs/req, which a
//      loaded machine disturbs far less than throughput;
//      BENCH_PROFILE=1 (or --profile): then one profiled run each of `exact` and `gateway`, and where the µs go.
// Redis calls per request: script calls (EVAL/EVALSHA, from INFO commandstats) over each run / requests answered.
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { createRequire } from 'node:module'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import replyFrom from '@fastify/reply-from'
import { Redis } from 'ioredis'
import { cpuMicros, load, measure, type RunResult } from './lib/load.js'
import { fmt, median, table } from './lib/report.js'
import { BenchChild, startChild, killAll, type ChildReply, type ChildRequest, type ChildStats } from './lib/servers.js'
import { GcMeter, Profiler } from './lib/profiler.js'
import { compare, readProfile } from './lib/cpuprofile.js'
import { existsSync, mkdtempSync } from 'node:fs'
import { join } from 'node:path'
import { BODY } from './lib/upstream.js'
import loadBalancer, { passThroughBodies } from '../plugins/load-balancer.js'
import metrics from '../plugins/metrics.js'
import rateLimit, { type RouteRateLimit } from '../plugins/rate-limit.js'
import { startRedis } from '../test/helpers/redis.js'

const env = process.env
const DURATION = Number(env.BENCH_DURATION ?? 4)
const ROUNDS = Number(env.BENCH_ROUNDS ?? 5)
const WARMUP = Number(env.BENCH_WARMUP ?? 4)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64)
const RATE = Number(env.BENCH_RATE ?? 0)
// PEERS.md's pinned layout: the proxy under test alone on the last CPU; load generator, upstreams and Redis on the others
const PIN = env.BENCH_PIN !== '0' && os.cpus().length >= 2 && existsSync('/usr/bin/taskset')
const PROFILE = process.argv.includes('--profile') || env.BENCH_PROFILE === '1'
const SELF = fileURLToPath(import.meta.url)
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const
// never reached in a run: every request is decided, none refused (a 429 would be cheaper than a proxied answer)
const BIG = { limit: 1_000_000_000, window: 60_000 }

type Role = 'reply-from' | 'gateway' | 'exact' | 'exact-write' | 'exact-pipe' | 'lease' | 'fastify-rate-limit'
interface ChildArgs { upstreams: string[], redis: string }

// ---------------------------------------------------------------- the setups, each in its own child process

async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return (app.server.address() as AddressInfo).port
}

/** The gateway as plugins/gateway.ts builds it (metrics, load balancer, one catch-all route), plus the limiter when asked. */
async function gateway (a: ChildArgs, limit: { rule: RouteRateLimit, autoPipelining: boolean, coalesceWrites?: boolean } | undefined): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(metrics, {})
  await app.register(loadBalancer, {
    upstreams: { u: { strategy: 'round_robin', targets: a.upstreams.map((url, i) => ({ id: `up-${i + 1}`, url })) } },
  })
  // a deadline no loaded run reaches: every request is decided in Redis, none passes by fail_open
  if (limit !== undefined) await app.register(rateLimit, { redis: a.redis, clusterName: 'bench', autoPipelining: limit.autoPipelining, coalesceWrites: limit.coalesceWrites, storeTimeout: 2000 })
  await app.register(async (scope) => {
    passThroughBodies(scope)
    for (const url of ['/', '/*']) {
      scope.route({
        method: [...METHODS], url, exposeHeadRoute: false,
        config: { upstream: 'u', gatewayRoute: '/', rateLimit: limit?.rule ?? [] },
        handler: (_req, reply) => reply.proxy(),
      })
    }
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
    case 'exact': return await gateway(a, { rule: sliding, autoPipelining: false, coalesceWrites: true })
    case 'exact-write': return await gateway(a, { rule: sliding, autoPipelining: false, coalesceWrites: false })
    case 'exact-pipe': return await gateway(a, { rule: sliding, autoPipelining: true, coalesceWrites: false })
    case 'lease': return await gateway(a, { rule: { ...sliding, mode: 'lease' }, autoPipelining: false, coalesceWrites: true })
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
      if (m.type === 'ready') resolve(new BenchChild(role, proc, m.port, m.info))
      else { proc.kill('SIGKILL'); reject(new Error(`${role}: ${m.message}`)) }
    })
  })
}

interface Setup { role: Role, label: string, child: BenchChild, runs: RunResult[], calls: number[], redisCpu: number[], vsGateway: Array<{ rps: number, cpu: number }> }

const LABELS: Record<Role, string> = {
  'reply-from': 'bare @fastify/reply-from',
  gateway: 'gateway, no limit',
  exact: 'gateway + exact sliding_window in Redis (default: one writev per event-loop turn)',
  'exact-write': 'gateway + exact sliding_window in Redis, one write per command',
  'exact-pipe': 'gateway + exact sliding_window in Redis, ioredis auto-pipelining',
  lease: 'gateway + lease mode (sliding_window)',
  'fastify-rate-limit': 'reply-from + @fastify/rate-limit, Redis store',
}

/** Pin a process (all its threads) to `cpus` (a taskset list such as "0" or "1"). */
function pin (pid: number, cpus: string): void {
  if (PIN && pid > 0) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
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
  const roles: Role[] = ['reply-from', 'gateway', 'exact', 'exact-write', 'exact-pipe', 'lease', 'fastify-rate-limit']
  const setups: Setup[] = []
  for (const role of roles) setups.push({ role, label: LABELS[role], child: await startRole(role, args), runs: [], calls: [], redisCpu: [], vsGateway: [] })
  for (const s of setups) pin(s.child.pid, String(last))
  if (PIN) console.log(`pinned: each proxy on CPU ${last}; load generator, upstreams and Redis on CPU ${others} (BENCH_PIN=0 to not pin)`)
  try {
    for (const s of setups) {
      const res = await fetch(s.child.url + '/bench')
      const text = await res.text()
      if (res.status !== 200 || text !== BODY) throw new Error(`${s.role}: unexpected answer ${res.status} ${text.slice(0, 200)}`)
      await load({ url: s.child.url, connections: CONNECTIONS, duration: WARMUP })
    }
    console.log(`warm-up done; ${conditions()}\n`)
    // every setup runs right next to a run of the no-limit gateway (before or after it, alternating), so each
    // ratio compares two runs seconds apart: this shared machine's load drifts over tens of seconds
    const gw = by(setups, 'gateway')
    const others = setups.filter((s) => s !== gw)
    const one = async (s: Setup, r: number): Promise<RunResult> => {
      const before = await scriptCalls(admin)
      const cpu0 = await redisCpu(admin)
      const run = RATE > 0 ? await measureAtRate(s.child, RATE) : await measure(s.child, { url: s.child.url, connections: CONNECTIONS, duration: DURATION })
      const calls = (await scriptCalls(admin) - before) / run.completed
      s.runs.push(run)
      s.calls.push(calls)
      s.redisCpu.push((await redisCpu(admin) - cpu0) / run.completed)
      console.log(`round ${r + 1}/${ROUNDS} ${s.role.padEnd(18)} ${fmt(run.rps).padStart(7)} req/s  p50 ${run.p50} ms  p99 ${run.p99} ms  ` +
        `${fmt(run.cpuPerReq, 1)} µs CPU/req  Redis calls/req ${calls.toFixed(3)}${run.bad > 0 ? `  !! ${run.bad} errors/non-2xx` : ''}  [${conditions()}]`)
      return run
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < others.length; k++) {
        const s = others[(r + k) % others.length]
        const gwFirst = (r + k) % 2 === 0
        const a = gwFirst ? await one(gw, r) : undefined
        const run = await one(s, r)
        const b = a ?? await one(gw, r)
        s.vsGateway.push({ rps: run.rps / b.rps, cpu: run.cpuPerReq / b.cpuPerReq })
      }
    }
    report(setups)
    for (const s of setups.filter((x) => ['exact', 'exact-write', 'exact-pipe', 'lease'].includes(x.role))) {
      const text = await (await fetch(s.child.url + '/metrics')).text()
      const lines = text.split('\n').filter((l) => /^ratelimit_(decisions_total|store_errors_total) /.test(l) || /^ratelimit_decisions_total\{/.test(l))
      console.log(`${s.role}: ${lines.join('; ')}`)
    }
    if (PROFILE) await profile(by(setups, 'exact'), by(setups, 'gateway'))
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
  const rfVs = vs(by(setups, 'reply-from'), 'rps')
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
  const exact = vs(by(setups, 'exact'), 'rps')
  const lease = vs(by(setups, 'lease'), 'rps')
  const frl = vs(by(setups, 'fastify-rate-limit'), 'rps')
  const checks: Array<[string, number, number]> = [
    ['exact ≥ 0.85× gateway', exact, 0.85],
    ['lease ≥ 0.95× gateway', lease, 0.95],
    ['exact ahead of reply-from + @fastify/rate-limit + Redis', exact / frl, 1],
    ['lease ahead of reply-from + @fastify/rate-limit + Redis', lease / frl, 1],
  ]
  console.log('')
  for (const [what, x, goal] of checks) console.log(`CHECK ${what} (req/s): ${x.toFixed(3)} → ${x >= goal ? 'PASS' : 'FAIL'}`)
  console.log(`gateway / bare reply-from: ${(1 / rfVs).toFixed(3)}; @fastify/rate-limit + Redis / bare reply-from: ${(frl / rfVs).toFixed(3)}; ` +
    `exact, one write per command / gateway: ${vs(by(setups, 'exact-write'), 'rps').toFixed(3)}; ` +
    `exact with ioredis auto-pipelining / gateway: ${vs(by(setups, 'exact-pipe'), 'rps').toFixed(3)}`)
  const bad = setups.reduce((n, s) => n + s.runs.reduce((a, r) => a + r.bad, 0), 0)
  if (bad > 0) console.log(`!! ${bad} errors, timeouts or non-2xx answers over all runs`)
}

if (process.argv[2] === '--child') {
  await child(process.argv[3] as Role, JSON.parse(process.argv[4]) as ChildArgs)
} else {
  try {
    await main()
  } catch (err) {
    console.error(err)
    process.exitCode = 1
  } finally {
    killMine()
    killAll()
  }
}
