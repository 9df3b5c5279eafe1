// Gateway throughput with active probes on 1,000 targets (1 s interval) against the same gateway
// without probes. One route over two real upstream processes; the 1,000 probed targets are a second
// upstream pointing at 4 local servers (another process). Each round starts a fresh gateway process
// per variant, in alternating order (A B, B A, ...), warms it up, measures its event-loop lag idle
// and under autocannon load (64 connections), then stops it: only one gateway runs at a time.
// Usage: node --import tsx bench/health-throughput.ts [--rounds 3] [--seconds 8] [--targets 1000]
//        [--interval 1000] [--connections 64] [--idle 3]
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { request } from 'undici'

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '8' },
    idle: { type: 'string', default: '3' },
    targets: { type: 'string', default: '1000' },
    interval: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '64' },
    child: { type: 'string' },
    config: { type: 'string' },
  },
})

type Variant = 'probes' | 'none'
interface Lag { p50: number, p99: number, max: number, mean: number }
interface Window { lag: Lag, cpuPct: number, probes: number }
type ToChild = { op: 'start' } | { op: 'stop' }
type FromChild = { op: 'ready', address: string } | { op: 'window', window: Window }

/** Sampling timer of the lag histogram (ms); it records whole timer periods, so the period is subtracted (as bench/probes.ts). */
const RESOLUTION = 1
function lagOf (h: ReturnType<typeof monitorEventLoopDelay>): Lag {
  const ms = (ns: number): number => Math.max(0, Math.round((ns - RESOLUTION * 1e6) / 1e4) / 100)
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean) }
}

// ---------------------------------------------------------------- gateway child
async function runChild (configJson: string): Promise<void> {
  const { startNode } = await import('../plugins/gateway.js')
  const { validateConfig } = await import('../lib/config/index.js')
  const node = await startNode(validateConfig(JSON.parse(configJson)))
  const probeCount = async (): Promise<number> => {
    const m = node.app.gatewayMetrics.registry.getSingleMetric('health_probe_duration_seconds')
    if (m === undefined) return 0
    const { values } = await m.get()
    return (values as Array<{ metricName?: string, value: number }>)
      .filter((v) => v.metricName === 'health_probe_duration_seconds_count').reduce((n, v) => n + v.value, 0)
  }
  const h = monitorEventLoopDelay({ resolution: RESOLUTION })
  let cpu0 = process.cpuUsage()
  let t0 = performance.now()
  let probes0 = 0
  process.on('message', (m: ToChild) => {
    if (m.op === 'start') {
      h.reset()
      h.enable()
      cpu0 = process.cpuUsage()
      t0 = performance.now()
      void probeCount().then((n) => { probes0 = n })
    } else {
      h.disable()
      const cpu = process.cpuUsage(cpu0)
      const ms = performance.now() - t0
      void probeCount().then((n) => {
        const window: Window = { lag: lagOf(h), cpuPct: (cpu.user + cpu.system) / 10 / ms, probes: n - probes0 }
        process.send?.({ op: 'window', window } satisfies FromChild)
      })
    }
  })
  process.send?.({ op: 'ready', address: node.address } satisfies FromChild)
}

// ---------------------------------------------------------------- parent
interface AutocannonResult {
  requests: { average: number, total: number }
  latency: { p50: number, p99: number }
  non2xx: number
  errors: number
  timeouts: number
}
const autocannon = createRequire(import.meta.url)('autocannon') as (o: Record<string, unknown>) => Promise<AutocannonResult>
const DEMO = fileURLToPath(new URL('../example-app/demo-upstream.mjs', import.meta.url))
const SELF = fileURLToPath(import.meta.url)
const children = new Set<ChildProcess>()
process.once('exit', () => { for (const c of children) c.kill('SIGKILL') })

async function firstLine (child: ChildProcess): Promise<string> {
  const lines = createInterface({ input: child.stdout! })
  const [line] = await once(lines, 'line') as [string]
  lines.close()
  return line
}

async function demoUpstream (id: string): Promise<string> {
  const child = spawn(process.execPath, [DEMO], { env: { ...process.env, UPSTREAM_ID: id }, stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(child)
  const { port } = JSON.parse(await firstLine(child)) as { port: number }
  return `http://127.0.0.1:${port}`
}

/** CPU ms (user + system) a child has used so far, from /proc (Linux); NaN elsewhere. */
function cpuMsOf (pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${String(pid)}/stat`, 'utf8')
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 1000 / CLK_TCK
  } catch {
    return NaN
  }
}
const CLK_TCK = 100
let fleetPid: number | undefined

/** 4 node:http servers in one process answering 200 to any path: the probed fleet. */
async function probeServers (n = 4): Promise<string[]> {
  const src = `
    const http = require('node:http'); const ports = []; let left = ${n}
    for (let i = 0; i < ${n}; i++) {
      const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"status":"ok"}') })
      s.keepAliveTimeout = 65000
      s.listen(0, '127.0.0.1', () => { ports.push(s.address().port); if (--left === 0) process.stdout.write(JSON.stringify(ports) + '\\n') })
    }`
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(child)
  fleetPid = child.pid
  return (JSON.parse(await firstLine(child)) as number[]).map((p) => `http://127.0.0.1:${p}`)
}

function config (variant: Variant, api: string[], fleet: string[], targets: number, interval: number): unknown {
  return {
    node: { id: `bench-${variant}`, port: 0 },
    upstreams: {
      api: { targets: api.map((url, i) => ({ id: `api-${i + 1}`, url })) },
      fleet: {
        targets: Array.from({ length: targets }, (_, i) => ({ id: `f-${i}`, url: fleet[i % fleet.length] })),
        healthCheck: {
          required: false,
          ...(variant === 'probes'
            ? { active: { type: 'http', path: '/health', interval: `${interval}ms`, timeout: `${Math.min(500, interval)}ms`, healthyThreshold: 2, unhealthyThreshold: 2 } }
            : {}),
        },
      },
    },
    routes: [{ path: '/api', upstream: 'api' }],
  }
}

interface RoundResult { variant: Variant, rps: number, p50: number, p99: number, bad: number, idle: Window, load: Window, cpuUsPerReq: number, fleetCpuPct: number }

async function round (variant: Variant, cfg: unknown, seconds: number, idle: number, connections: number): Promise<RoundResult> {
  const child = fork(SELF, ['--child', variant, '--config', JSON.stringify(cfg)], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(child)
  const next = async <T extends FromChild['op']>(op: T): Promise<Extract<FromChild, { op: T }>> => {
    for (;;) {
      const [m] = await once(child, 'message') as [FromChild]
      if (m.op === op) return m as Extract<FromChild, { op: T }>
    }
  }
  const send = (m: ToChild): void => { child.send(m) }
  try {
    const { address } = await next('ready')
    const url = `${address}/api/bench`
    // Warm-up: JIT, connection pools, and (probes) the first probe round of every target.
    const warm = await request(url)
    await warm.body.dump()
    await autocannon({ url, connections, duration: 2 })
    await new Promise((resolve) => setTimeout(resolve, 1000))

    send({ op: 'start' })
    await new Promise((resolve) => setTimeout(resolve, idle * 1000))
    send({ op: 'stop' })
    const idleWin = (await next('window')).window

    send({ op: 'start' })
    const fleet0 = cpuMsOf(fleetPid)
    const r = await autocannon({ url, connections, duration: seconds })
    const fleetCpuPct = (cpuMsOf(fleetPid) - fleet0) / 10 / seconds
    send({ op: 'stop' })
    const loadWin = (await next('window')).window
    const rps = r.requests.total / seconds
    return {
      variant, rps, p50: r.latency.p50, p99: r.latency.p99, bad: r.non2xx + r.errors + r.timeouts, idle: idleWin, load: loadWin,
      cpuUsPerReq: loadWin.cpuPct * 10_000 / Math.max(1, rps), fleetCpuPct,
    }
  } finally {
    child.kill('SIGKILL')
    children.delete(child)
  }
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2
}

async function main (): Promise<void> {
  const rounds = Number(args.rounds)
  const seconds = Number(args.seconds)
  const idle = Number(args.idle)
  const targets = Number(args.targets)
  const interval = Number(args.interval)
  const connections = Number(args.connections)
  const [api1, api2, fleet] = await Promise.all([demoUpstream('api-1'), demoUpstream('api-2'), probeServers()])
  const api = [api1, api2]
  console.log(`gateway: 1 route over 2 upstream processes; fleet upstream of ${targets} targets on ${fleet.length} servers`)
  console.log(`probes variant: active http probes, interval ${interval} ms; none: same config without active checks`)
  console.log(`autocannon ${connections} connections, ${seconds} s per run; idle lag over ${idle} s; ${rounds} rounds, order alternating\n`)
  const results: RoundResult[] = []
  const fmt = (r: RoundResult): string =>
    `${r.variant.padEnd(6)} ${r.rps.toFixed(0).padStart(5)} req/s  p50 ${String(r.p50).padStart(3)} ms  p99 ${String(r.p99).padStart(4)} ms  bad ${r.bad}` +
    `  gw cpu ${r.load.cpuPct.toFixed(0)} % (${r.cpuUsPerReq.toFixed(0)} µs/req)  lag p99 ${r.load.lag.p99.toFixed(1)} max ${r.load.lag.max.toFixed(1)} ms  probes ${(r.load.probes / seconds).toFixed(0)}/s  fleet cpu ${r.fleetCpuPct.toFixed(0)} %` +
    `  | idle: lag p99 ${r.idle.lag.p99.toFixed(1)} max ${r.idle.lag.max.toFixed(1)} ms  cpu ${r.idle.cpuPct.toFixed(0)} %  probes ${(r.idle.probes / idle).toFixed(0)}/s`
  for (let i = 0; i < rounds; i++) {
    const order: Variant[] = i % 2 === 0 ? ['probes', 'none'] : ['none', 'probes']
    for (const v of order) {
      const r = await round(v, config(v, api, fleet, targets, interval), seconds, idle, connections)
      results.push(r)
      console.log(`round ${i + 1}  ${fmt(r)}`)
    }
  }
  console.log('\nmedians:')
  const med: Record<Variant, Record<string, number>> = { probes: {}, none: {} }
  for (const v of ['probes', 'none'] as const) {
    const rs = results.filter((r) => r.variant === v)
    const m = (f: (r: RoundResult) => number): number => median(rs.map(f))
    med[v] = { rps: m((r) => r.rps), cpuUsPerReq: m((r) => r.cpuUsPerReq) }
    console.log(`${v.padEnd(6)} ${m((r) => r.rps).toFixed(0)} req/s (runs ${rs.map((r) => r.rps.toFixed(0)).join(', ')}), latency p99 ${m((r) => r.p99)} ms, ` +
      `gateway ${m((r) => r.cpuUsPerReq).toFixed(0)} µs cpu/req; lag under load p99 ${m((r) => r.load.lag.p99).toFixed(1)} ms, max ${m((r) => r.load.lag.max).toFixed(1)} ms; ` +
      `idle lag p99 ${m((r) => r.idle.lag.p99).toFixed(1)} ms, max ${m((r) => r.idle.lag.max).toFixed(1)} ms, idle cpu ${m((r) => r.idle.cpuPct).toFixed(1)} %; ` +
      `probes ${m((r) => r.load.probes / seconds).toFixed(0)}/s under load, ${m((r) => r.idle.probes / idle).toFixed(0)}/s idle; fleet cpu ${m((r) => r.fleetCpuPct).toFixed(0)} %`)
  }
  console.log(`throughput with probes: ${((med.probes.rps / med.none.rps - 1) * 100).toFixed(1)} % vs without; gateway cpu per request ${((med.probes.cpuUsPerReq / med.none.cpuUsPerReq - 1) * 100).toFixed(1)} %`)
}

if (args.child !== undefined) await runChild(args.config ?? '{}')
else {
  await main()
  for (const c of children) c.kill('SIGKILL')
}
