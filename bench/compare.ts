// Every proxy setup side by side, as users run them (issue 13): bare Fastify + @fastify/reply-from (the base),
// @fastify/http-proxy, the gateway started by the CLI with its default config (access log on, written to stdout
// which is /dev/null here: the node pays its write syscalls as to a collector's pipe, the reader's CPU is not
// the gateway's), the same with `log.requests: off`, and startNode with the logger off. Rounds interleave (A B C, then C B A); per round and setup: req/s, CPU µs per
// request of the proxy process from /proc/<pid>/stat (utime + stime, every thread) over the requests served,
// p99; each against bare reply-from of the same round, median over rounds. Then p99 at a fixed rate (half of
// bare reply-from's saturation rate), measured to the µs by an open-loop generator.
//   npm run bench:compare
// Env (or --key=value flags, e.g. --rounds=3): BENCH_ROUNDS (5), BENCH_DURATION (s, 5), BENCH_CONNECTIONS (64),
//   BENCH_WARMUP (s per setup, 3), BENCH_RATE_SECONDS (s per setup at half rate, 5; 0: skip),
//   BENCH_SETUPS (comma list, default reply-from,http-proxy,cli,cli-off,startnode; also cli-file: access log to a
//   file, and workers-1, workers-2, workers-4: the CLI's default config with node.workers N, its CPU summed over the
//   primary and every worker, pinned to N cores of its own when pinning is on), BENCH_PIN (pin when the machine has >= 6 cores and taskset, unless 0; `split`: on a small machine, the proxy
//   under test alone on the last core, the upstreams, Redis and the load generator on the others), BENCH_WORKERS (autocannon
//   worker threads; default 2 when pinned, else 0), BENCH_CLI (tsx: bin/*.ts through tsx, default; dist: the built
//   dist/bin, as installed), BENCH_OUT (also write the Markdown report to this file). Rate-limit setups (a
//   redis-server of their own, started when one is asked for): cli-redis (cluster.redis, no limit), cli-exact
//   (cluster.redis + a sliding-window limit never reached, every decision in Redis), cli-lease (the same, mode lease).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { benchEnv, cliServer, COMMON_SETUPS, pickSetups, type CliServer } from './lib/cli-process.js'
import { load } from './lib/load.js'
import { fixedRate, type RateResult } from './lib/rate.js'
import { fmt, median, table } from './lib/report.js'
import { CAN_PIN, killAll, pin, startChild, type BenchChild } from './lib/servers.js'
import { freePort, gatewayConfig } from './lib/setups.js'
import { BODY } from './lib/upstream.js'
import { startRedis, type RedisProcess } from '../test/helpers/redis.js'

const env = benchEnv()
const ROUNDS = Number(env.BENCH_ROUNDS ?? 5)
const DURATION = Number(env.BENCH_DURATION ?? 5)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64)
const WARMUP = Number(env.BENCH_WARMUP ?? 3)
const RATE_SECONDS = Number(env.BENCH_RATE_SECONDS ?? 5)
const CORES = os.cpus().length
const SPLIT = env.BENCH_PIN === 'split' && CORES >= 2 && CAN_PIN
const PIN = !SPLIT && env.BENCH_PIN !== '0' && CORES >= 6 && CAN_PIN // each server on its own core needs cores to spare
const WORKERS = Number(env.BENCH_WORKERS ?? (PIN ? 2 : 0))
const CLI_MODE = env.BENCH_CLI === 'dist' ? 'dist' : 'tsx'
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const TICK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

type Key = 'reply-from' | 'http-proxy' | 'cli' | 'cli-off' | 'cli-file' | 'startnode' | 'workers-1' | 'workers-2' | 'workers-4' |
  'cli-redis' | 'cli-exact' | 'cli-lease'
const ABOUT: Record<Key, string> = {
  ...COMMON_SETUPS,
  'cli-redis': 'gateway via the CLI, cluster.redis, no limit',
  'cli-exact': 'gateway via the CLI, cluster.redis + sliding-window limit (exact, never reached)',
  'cli-lease': 'gateway via the CLI, cluster.redis + sliding-window limit, mode lease (never reached)',
  'workers-1': 'gateway via the CLI, node.workers: 1 (default config)',
  'workers-2': 'gateway via the CLI, node.workers: 2 (CPU of the primary and both workers)',
  'workers-4': 'gateway via the CLI, node.workers: 4 (CPU of the primary and every worker)',
  'cli-file': 'gateway via the CLI, access log to a file',
}
const KEYS = pickSetups(ABOUT, env.BENCH_SETUPS, 'reply-from,http-proxy,cli,cli-off,startnode')

type Server = CliServer
interface Run { rps: number, cpu: number, p99: number, bad: number }
interface Setup { key: Key, server: Server, runs: Run[], rate?: RateResult }

/** CPU seconds (user + system, all threads) of a process so far, and of its child processes (node.workers). */
function cpuSeconds (pid: number): number {
  let total = 0
  for (const p of [pid, ...childrenOf(pid)]) {
    let s: string
    try { s = readFileSync(`/proc/${p}/stat`, 'utf8') } catch { continue } // exited meanwhile
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ') // fields from the 3rd on: utime is the 14th, stime the 15th
    total += (Number(f[11]) + Number(f[12])) / TICK
  }
  return total
}

/** Live child processes of `pid` (a node.workers primary's workers); none for a single process. */
function childrenOf (pid: number): number[] {
  const out: number[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'utf8')
      if (Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d))
    } catch {}
  }
  return out
}

/** node.workers of a workers-N setup, else 0. */
const workersOf = (key: Key): number => key.startsWith('workers-') ? Number(key.slice('workers-'.length)) : 0

const mine = new Set<ChildProcess>()
let redis: RedisProcess | undefined
process.on('exit', () => { for (const p of mine) p.kill('SIGKILL') })

/** The gateway as users start it: `fastify-ha-gateway start --config <file>`, stdout to /dev/null. */
async function startCli (key: Key, upstreams: string[], dir: string): Promise<Server> {
  const port = await freePort()
  const config: Record<string, unknown> = { ...gatewayConfig(upstreams, port), node: { id: `bench-${key}`, host: '127.0.0.1', port } }
  if (key === 'cli-off') config.log = { requests: 'off' }
  if (key === 'cli-redis' || key === 'cli-exact' || key === 'cli-lease') {
    redis ??= await startRedis()
    config.cluster = { name: `bench-${key}`, redis: redis.url }
    if (key !== 'cli-redis') {
      const rule = { algorithm: 'sliding_window', limit: 1e9, window: '1s', key: 'ip', ...(key === 'cli-lease' ? { mode: 'lease' } : {}) }
      config.routes = [{ path: '/', upstream: 'u', rateLimit: rule }]
    }
  }
  if (key === 'cli-file') config.log = { destination: join(dir, 'access.log') }
  if (workersOf(key) > 0) config.node = { ...(config.node as object), workers: workersOf(key) }
  const file = join(dir, `${key}.yaml`)
  writeFileSync(file, JSON.stringify(config, null, 2)) // JSON is YAML
  const args = CLI_MODE === 'dist'
    ? [join(ROOT, 'dist/bin/fastify-ha-gateway.js'), 'start', '--config', file]
    : ['--import', 'tsx', join(ROOT, 'bin/fastify-ha-gateway.ts'), 'start', '--config', file]
  if (CLI_MODE === 'dist' && !existsSync(args[0])) throw new Error('BENCH_CLI=dist: run npm run build first')
  const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_ENV: 'production' } })
  mine.add(proc)
  proc.once('exit', () => mine.delete(proc))
  const t0 = Date.now()
  const server = await cliServer(key, proc, `http://127.0.0.1:${port}`, 60, 'SIGTERM')
  // node.workers: every worker forked (pinning and CPU count them all); the warm-up covers their boot
  while (workersOf(key) > 1 && childrenOf(proc.pid!).length < workersOf(key)) {
    if (Date.now() - t0 > 60_000) throw new Error(`${key}: ${workersOf(key)} workers not started after 60 s`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  return server
}

const fromChild = (c: BenchChild): Server => ({ pid: c.pid, url: c.url, stop: async () => { await c.stop() } })

async function startSetup (key: Key, upstreams: string[], dir: string): Promise<Server> {
  switch (key) {
    case 'reply-from': return fromChild(await startChild(key, 'reply-from', { upstreams }))
    case 'http-proxy': return fromChild(await startChild(key, 'http-proxy', { upstreams }))
    case 'startnode': return fromChild(await startChild(key, 'gateway', { upstreams }))
    default: return await startCli(key, upstreams, dir)
  }
}

async function measure (s: Setup): Promise<Run> {
  const before = cpuSeconds(s.server.pid)
  const t0 = process.hrtime.bigint()
  const r = await load({ url: s.server.url, connections: CONNECTIONS, duration: DURATION, workers: WORKERS })
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const cpu = cpuSeconds(s.server.pid) - before
  const n = r.requests.total
  return { rps: n / seconds, cpu: n > 0 ? 1e6 * cpu / n : NaN, p99: r.latency.p99, bad: r.errors + r.timeouts + r.non2xx }
}

const spread = (all: number[]): string => {
  const xs = all.filter((x) => Number.isFinite(x))
  return xs.length === 0 ? 'n/a' : `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`
}

async function main (): Promise<void> {
  const acVersion = (createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version
  const out: string[] = []
  const say = (line = ''): void => { console.log(line); out.push(line) }
  say(`# bench:compare ${new Date().toISOString()}`)
  say()
  say(`node ${process.version}, ${CORES} CPUs (${os.cpus()[0]?.model ?? '?'}), autocannon ${acVersion}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`)
  say(`${ROUNDS} rounds x ${DURATION} s, ${CONNECTIONS} connections, warm-up ${WARMUP} s per setup, autocannon workers ${WORKERS}; ` +
    `CLI from ${CLI_MODE === 'dist' ? 'dist/ (built)' : 'bin/*.ts through tsx'}; pinning ${PIN ? 'on' : SPLIT ? `split (the proxy alone on core ${CORES - 1}, everything else on 0-${CORES - 2})` : `off (${CORES} cores)`}`)
  const dir = mkdtempSync(join(os.tmpdir(), 'fhg-compare-'))
  const upChildren = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const upstreams = upChildren.map((u) => u.url)
  const setups: Setup[] = []
  for (const key of KEYS) setups.push({ key, server: await startSetup(key, upstreams, dir), runs: [] })
  // a workers-N setup needs N cores of its own (from core 2; one setup runs at a time) and the generator some more
  const maxWorkers = Math.max(0, ...setups.map((s) => workersOf(s.key)))
  if (PIN && 2 + maxWorkers + 2 > CORES) say(`!! ${CORES} cores: workers-${maxWorkers} shares its cores with the load generator`)
  if (SPLIT) {
    const rest = CORES === 2 ? '0' : `0-${CORES - 2}`
    for (const u of upChildren) pin(u.pid, rest)
    if (redis !== undefined) pin(redis.pid, rest)
    for (const s of setups) for (const p of [s.server.pid, ...childrenOf(s.server.pid)]) pin(p, String(CORES - 1))
    pin(process.pid, rest)
  }
  if (PIN) {
    // upstreams on cores 0 and 1, each proxy on its own core from 2 (one runs at a time: sharing when short), the
    // load generator on the rest
    const proxyCores = Math.max(1, Math.min(setups.length, CORES - 4), Math.min(maxWorkers, CORES - 4))
    const coresOf = (s: Setup, i: number): string => workersOf(s.key) > 0
      ? `2-${2 + Math.min(workersOf(s.key), proxyCores) - 1}` // the primary and its workers on N cores
      : String(2 + (i % proxyCores))
    upChildren.forEach((u, i) => { pin(u.pid, String(i)) })
    setups.forEach((s, i) => { for (const p of [s.server.pid, ...childrenOf(s.server.pid)]) pin(p, coresOf(s, i)) })
    pin(process.pid, `${2 + proxyCores}-${CORES - 1}`)
    say(`pinned: upstreams 0,1; ${setups.map((s, i) => `${s.key} ${coresOf(s, i)}`).join(', ')}; load generator ${2 + proxyCores}-${CORES - 1}`)
  }
  for (const s of setups) {
    const res = await fetch(`${s.server.url}/bench?x=1`)
    const text = await res.text()
    if (res.status !== 200 || text !== BODY) throw new Error(`${s.key}: unexpected answer ${res.status} ${text.slice(0, 200)}`)
    if (WARMUP > 0) await load({ url: s.server.url, connections: CONNECTIONS, duration: WARMUP, workers: WORKERS })
  }
  say()
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? setups : [...setups].reverse()
    const line: string[] = []
    for (const s of order) {
      const run = await measure(s)
      s.runs.push(run)
      line.push(`${s.key} ${fmt(run.rps)}/s ${run.cpu.toFixed(1)}µs p99 ${run.p99}ms${run.bad > 0 ? ` !!${run.bad} bad` : ''}`)
    }
    say(`round ${r + 1}/${ROUNDS}: ${line.join(' | ')}  [load ${os.loadavg()[0].toFixed(2)}]`)
  }
  const base = setups.find((s) => s.key === 'reply-from')!
  const baseRps = median(base.runs.map((x) => x.rps))
  // p99 at one offered rate for all: half of bare reply-from's saturation, interleaved A B C then C B A
  const rate = Math.round(baseRps / 2)
  if (RATE_SECONDS > 0) {
    for (const order of [setups, [...setups].reverse()]) {
      for (const s of order) {
        const r = await fixedRate(s.server.url, rate, RATE_SECONDS / 2, CONNECTIONS)
        s.rate = s.rate === undefined ? r : { ...r, p50: (s.rate.p50 + r.p50) / 2, p99: Math.max(s.rate.p99, r.p99), errors: s.rate.errors + r.errors }
      }
    }
  }
  const ratios = (s: Setup, f: (x: Run) => number): number[] => s.runs.map((x, i) => f(x) / f(base.runs[i]))
  say()
  say(`Medians over ${ROUNDS} rounds; "× bare" is the median of per-round ratios against bare reply-from (min-max over rounds). ` +
    `p99 at ${fmt(rate)} req/s: open loop, half of bare reply-from's saturation rate, worst of two runs.`)
  say()
  say(table(['setup', 'req/s', '× bare req/s (range)', 'CPU µs/req', '× bare CPU (range)', 'p99 ms at saturation', `p50 / p99 ms at ${fmt(rate)}/s`, 'p99 − bare (ms)'],
    setups.map((s) => {
      const rps = ratios(s, (x) => x.rps)
      const cpu = ratios(s, (x) => x.cpu)
      return [
        `${s.key}: ${ABOUT[s.key]}`,
        fmt(median(s.runs.map((x) => x.rps))), `${median(rps).toFixed(3)} (${spread(rps)})`,
        median(s.runs.map((x) => x.cpu)).toFixed(1), `${median(cpu).toFixed(3)} (${spread(cpu)})`,
        String(median(s.runs.map((x) => x.p99))),
        s.rate === undefined ? 'n/a' : `${s.rate.p50.toFixed(2)} / ${s.rate.p99.toFixed(2)}${s.rate.errors > 0 ? ` !!${s.rate.errors} errors` : ''}`,
        s.rate === undefined || base.rate === undefined ? 'n/a' : (s.rate.p99 - base.rate.p99).toFixed(2),
      ]
    })))
  const pair = (a: Key, b: Key): void => {
    const x = setups.find((s) => s.key === a)
    const y = setups.find((s) => s.key === b)
    if (x === undefined || y === undefined) return
    const d = x.runs.map((r, i) => r.cpu - y.runs[i].cpu).filter((v) => Number.isFinite(v))
    if (d.length === 0) return
    say(`${a} − ${b}: CPU ${median(d).toFixed(1)} µs/request (median of per-round differences; range ${Math.min(...d).toFixed(1)} to ${Math.max(...d).toFixed(1)})`)
  }
  say()
  pair('cli', 'cli-off') // the access log, across two processes
  pair('cli-file', 'cli-off')
  pair('cli-off', 'startnode') // the CLI's logger and V8 flag, less the access log
  pair('startnode', 'reply-from')
  const bad = setups.reduce((n, s) => n + s.runs.reduce((a, r) => a + r.bad, 0), 0)
  if (bad > 0) say(`!! ${bad} errors, timeouts or non-2xx answers over all runs`)
  if (SPLIT) say(`\n(split: each proxy had core ${CORES - 1} to itself while it ran; the load generator, the upstreams and Redis shared the rest)`)
  else if (!PIN) say(`\n(not pinned: ${CORES} cores shared by the load generator, the upstreams and the proxy; ratios compress and vary from run to run)`)
  if (env.BENCH_OUT !== undefined) writeFileSync(env.BENCH_OUT, out.join('\n') + '\n')
  await Promise.all(setups.map(async (s) => await s.server.stop()))
}

try {
  await main()
} catch (err) {
  console.error(err)
  process.exitCode = 1
} finally {
  killAll()
  for (const p of mine) p.kill('SIGKILL')
  await redis?.stop()
}
