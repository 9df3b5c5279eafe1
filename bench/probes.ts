// Active probing at scale: 1,000 targets at a 1 s interval, event-loop lag of the probing process.
// Upstreams run in a child process (4 node:http servers) so their work does not count here;
// many targets share each URL, as they may in a real pool.
// Usage: node --import tsx bench/probes.ts [--targets 1000] [--interval 1000] [--seconds 10] [--concurrency 10] [--type http|tcp]
import { spawn } from 'node:child_process'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { UpstreamPool } from '../lib/upstream/pool.js'
import { createHealth } from '../lib/health/index.js'

const { values: args } = parseArgs({
  options: {
    targets: { type: 'string', default: '1000' },
    interval: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '10' },
    type: { type: 'string', default: 'http' },
    servers: { type: 'string', default: '4' },
    // One request before measuring: undici compiles its llhttp WASM parser on first use (a one-off
    // pause the gateway pays anyway for proxying); --warm keeps it out of the probing figures.
    warm: { type: 'boolean', default: false },
  },
})
const TARGETS = Number(args.targets)
const INTERVAL = Number(args.interval)
const SECONDS = Number(args.seconds)
const CONCURRENCY = Number(args.concurrency)
const SERVERS = Number(args.servers)
const TYPE = args.type === 'tcp' ? 'tcp' : 'http'

const UPSTREAMS = `
  const http = require('node:http')
  const ports = []
  let n = ${SERVERS}
  for (let i = 0; i < ${SERVERS}; i++) {
    const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"status":"ok"}') })
    s.keepAliveTimeout = 65000
    s.listen(0, '127.0.0.1', () => { ports.push(s.address().port); if (--n === 0) process.stdout.write(JSON.stringify(ports) + '\\n') })
  }
`

async function startUpstreams (): Promise<{ ports: number[], stop: () => void }> {
  const child = spawn(process.execPath, ['-e', UPSTREAMS], { stdio: ['ignore', 'pipe', 'inherit'] })
  const ports = await new Promise<number[]>((resolve, reject) => {
    child.once('error', reject)
    child.stdout.once('data', (d: Buffer) => resolve(JSON.parse(d.toString()) as number[]))
  })
  return { ports, stop: () => { child.kill('SIGKILL') } }
}

/** Sampling timer of the lag histogram (ms); the histogram records the whole timer period, so we subtract it. */
const RESOLUTION = 1

function lagOf (h: ReturnType<typeof monitorEventLoopDelay>): { p50: number, p99: number, max: number, mean: number } {
  const ms = (ns: number): number => Math.max(0, Math.round((ns - RESOLUTION * 1e6) / 1e4) / 100)
  return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean) }
}

/** Lag over the whole run, plus the max of each second (to tell start-up from steady state). */
async function measure (seconds: number, probeCount: () => number = () => 0): Promise<{ lag: ReturnType<typeof lagOf>, steady: ReturnType<typeof lagOf>, perSecondMax: number[], cpuMs: number, userMs: number, steadyCpuMs: number, steadyProbes: number }> {
  const h = monitorEventLoopDelay({ resolution: RESOLUTION })
  const steady = monitorEventLoopDelay({ resolution: RESOLUTION })
  const second = monitorEventLoopDelay({ resolution: RESOLUTION })
  const perSecondMax: number[] = []
  const cpu0 = process.cpuUsage()
  let steadyCpu0 = cpu0
  let steadyProbes0 = 0
  h.enable(); second.enable()
  for (let i = 0; i < seconds; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    perSecondMax.push(lagOf(second).max)
    second.reset()
    if (i === 1) { // from the third second on: after the start-up burst and JIT warm-up
      steady.enable()
      steadyCpu0 = process.cpuUsage()
      steadyProbes0 = probeCount()
    }
  }
  h.disable(); steady.disable(); second.disable()
  const cpu = process.cpuUsage(cpu0)
  const sc = process.cpuUsage(steadyCpu0)
  return {
    lag: lagOf(h), steady: lagOf(steady), perSecondMax,
    cpuMs: Math.round((cpu.user + cpu.system) / 1000), userMs: Math.round(cpu.user / 1000),
    steadyCpuMs: (sc.user + sc.system) / 1000, steadyProbes: probeCount() - steadyProbes0,
  }
}

async function main (): Promise<void> {
  const upstreams = await startUpstreams()
  try {
    if (args.warm === true) {
      const res = await request(`http://127.0.0.1:${upstreams.ports[0]}/`)
      await res.body.dump()
    }
    const baseline = await measure(3)
    console.log(`baseline (no probes, 3 s): lag p50 ${baseline.lag.p50} ms, p99 ${baseline.lag.p99} ms, max ${baseline.lag.max} ms, cpu ${baseline.cpuMs} ms`)

    const pool = new UpstreamPool('bench', Array.from({ length: TARGETS }, (_, i) => ({
      id: `t${i}`, url: `http://127.0.0.1:${upstreams.ports[i % upstreams.ports.length]}`,
    })))
    let probes = 0
    let failed = 0
    let probeMs = 0
    const h = createHealth(pool, {
      active: { type: TYPE, interval: INTERVAL, timeout: 500, healthyThreshold: 2, unhealthyThreshold: 2, concurrency: CONCURRENCY },
    }, { onProbe: (s) => { probes++; probeMs += s.result.durationMs; if (!s.result.ok) failed++ } })
    let transitions = 0
    h.registry.onTransition(() => { transitions++ })
    const t0 = performance.now()
    h.start()
    const run = await measure(SECONDS, () => probes)
    const elapsed = (performance.now() - t0) / 1000
    const healthy = pool.targets.filter((x) => x.status === 'healthy').length
    await h.close()

    const perSec = probes / elapsed
    console.log(`probing ${TARGETS} targets (${upstreams.ports.length} servers, ${TYPE}, interval ${INTERVAL} ms, concurrency ${CONCURRENCY}, ${SECONDS} s):`)
    console.log(`  probes ${probes} (${perSec.toFixed(0)}/s, ideal ${(TARGETS * 1000 / (INTERVAL * 1.05)).toFixed(0)}/s), failed ${failed}, mean probe ${(probeMs / Math.max(1, probes)).toFixed(2)} ms`)
    console.log(`  healthy ${healthy}/${TARGETS}, transitions ${transitions}`)
    console.log(`  event-loop lag p50 ${run.lag.p50} ms, p99 ${run.lag.p99} ms, max ${run.lag.max} ms (goal < 20 ms)`)
    console.log(`  steady state (from 2 s): p50 ${run.steady.p50} ms, p99 ${run.steady.p99} ms, max ${run.steady.max} ms`)
    console.log(`  max lag per second: ${run.perSecondMax.join(' ')} ms`)
    console.log(`  cpu ${run.cpuMs} ms in ${SECONDS} s (user ${run.userMs} ms) = ${(run.cpuMs / SECONDS / 10).toFixed(1)} % of a core, ${(run.cpuMs * 1000 / Math.max(1, probes)).toFixed(0)} µs/probe`)
    console.log(`  steady-state cpu ${(run.steadyCpuMs * 1000 / Math.max(1, run.steadyProbes)).toFixed(0)} µs/probe`)
    console.log(`  heap used ${(process.memoryUsage().heapUsed / 1048576).toFixed(1)} MB`)
  } finally {
    upstreams.stop()
  }
}

await main()
