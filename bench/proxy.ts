// Proxy overhead benchmark (issue 2): the gateway against bare @fastify/reply-from, @fastify/http-proxy
// and the upstream directly, in one script, rounds alternating, all over the same two upstreams.
//   npm run bench                       3 rounds x 4 setups x 8 s, 64 connections
//   npm run bench -- --memory           also the gateway's RSS idle / after 100k / after 1M requests
//   npm run bench -- --memory-only      only the memory phase
//   npm run bench -- --profile          then profile one more run of the gateway(s) and reply-from (CPU +
//                                       allocations) and print the difference per request
// Env: BENCH_DURATION (s, 8), BENCH_ROUNDS (3), BENCH_WARMUP (requests per setup, 20000:
//      counted, not timed, so a busy machine still warms the JIT), BENCH_CONNECTIONS (64),
//      BENCH_MEMORY=1, BENCH_PROFILE=1, BENCH_GATEWAY=plugins (skip plugins/gateway.ts),
//      BENCH_GATEWAY_FLAGS='--no-allocation-site-pretenuring' adds a 5th setup: the gateway started with
//      these node flags.
import { mkdtempSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { join } from 'node:path'
import { compare, readProfile, report } from './lib/cpuprofile.js'
import { load, measure, type RunResult } from './lib/load.js'
import { fmt, mb, median, ratio, table } from './lib/report.js'
import { startChild, killAll, type BenchChild } from './lib/servers.js'
import { BODY } from './lib/upstream.js'

const argv = process.argv.slice(2)
const env = process.env
const DURATION = Number(env.BENCH_DURATION ?? 8)
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3)
const WARMUP = Number(env.BENCH_WARMUP ?? 20_000)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 64)
const MEMORY_ONLY = argv.includes('--memory-only')
const MEMORY = MEMORY_ONLY || argv.includes('--memory') || env.BENCH_MEMORY === '1'
const PROFILE = argv.includes('--profile') || env.BENCH_PROFILE === '1'
/** Node/V8 flags for an extra gateway setup, e.g. --no-allocation-site-pretenuring. */
const GATEWAY_FLAGS = (env.BENCH_GATEWAY_FLAGS ?? '').split(' ').filter((f) => f !== '')
const GOAL = 0.95

interface Setup {
  key: 'gateway' | 'gateway+flags' | 'reply-from' | 'http-proxy' | 'direct'
  label: string
  /** The process whose CPU is charged to this setup. */
  measured: BenchChild
  url: string
  runs: RunResult[]
}

function conditions (): string {
  const av = os.loadavg().map((x) => x.toFixed(2)).join(' ')
  return `load average ${av}`
}

async function checkBody (s: Setup): Promise<void> {
  const res = await fetch(s.url + '/bench?x=1')
  const text = await res.text()
  if (res.status !== 200 || text !== BODY) throw new Error(`${s.key}: unexpected answer ${res.status} ${text.slice(0, 200)}`)
}

async function throughput (setups: Setup[], upstreams: BenchChild[]): Promise<void> {
  for (const s of setups) {
    await checkBody(s)
    await load({ url: s.url, connections: CONNECTIONS, amount: WARMUP })
  }
  console.log(`warm-up done (${fmt(WARMUP)} requests each); ${conditions()}\n`)
  const split = new Map<string, number[]>()
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < setups.length; k++) {
      const s = setups[(r + k) % setups.length] // rotate the order so no setup always runs first
      const before = await Promise.all(upstreams.map((u) => u.stats()))
      const run = await measure(s.measured, { url: s.url, connections: CONNECTIONS, duration: DURATION })
      const after = await Promise.all(upstreams.map((u) => u.stats()))
      const served = after.map((a, i) => a.served - before[i].served)
      split.set(s.key, (split.get(s.key) ?? upstreams.map(() => 0)).map((n, i) => n + served[i]))
      s.runs.push(run)
      console.log(`round ${r + 1}/${ROUNDS} ${s.key.padEnd(13)} ${fmt(run.rps).padStart(7)} req/s  p50 ${run.p50} ms  p99 ${run.p99} ms  ` +
        `${fmt(run.cpuPerReq, 1)} µs CPU/req (GC ${fmt(run.gcPerReq, 1)}; ${fmt(run.cpuPct)} % core)  load gen ${fmt(run.loadGenPct)} %` +
        `${run.bad > 0 ? `  !! ${run.bad} errors/non-2xx` : ''}  [${conditions()}]`)
    }
  }
  const base = setups.find((s) => s.key === 'reply-from')!
  const m = (s: Setup, f: (r: RunResult) => number): number => median(s.runs.map(f))
  const baseRps = m(base, (r) => r.rps)
  const baseCpu = m(base, (r) => r.cpuPerReq)
  const rows = setups.map((s) => [
    s.label,
    fmt(m(s, (r) => r.rps)), ratio(m(s, (r) => r.rps), baseRps),
    `${m(s, (r) => r.p50)} / ${m(s, (r) => r.p99)}`,
    `${ratio(m(s, (r) => r.p50), m(base, (r) => r.p50))} / ${ratio(m(s, (r) => r.p99), m(base, (r) => r.p99))}`,
    fmt(m(s, (r) => r.cpuPerReq), 1), ratio(m(s, (r) => r.cpuPerReq), baseCpu),
    fmt(m(s, (r) => r.gcPerReq), 1),
  ])
  console.log(`\nMedians over ${ROUNDS} rounds of ${DURATION} s, ${CONNECTIONS} connections:\n`)
  console.log(table(['setup', 'req/s', '× reply-from', 'p50 / p99 ms', '× reply-from', 'proxy CPU µs/req', '× reply-from', 'of it GC µs/req'], rows))
  // Same-round ratios cancel the drift of a shared machine between rounds.
  for (const g of setups.filter((s) => s.key.startsWith('gateway'))) {
    const paired = g.runs.map((r, i) => r.rps / base.runs[i].rps)
    const pairedCpu = g.runs.map((r, i) => r.cpuPerReq / base.runs[i].cpuPerReq)
    const rpsRatio = median(paired)
    const cpuRatio = median(pairedCpu)
    console.log(`\nper-round ${g.key} / reply-from: req/s ${paired.map((x) => x.toFixed(2)).join(' ')}; CPU/req ${pairedCpu.map((x) => x.toFixed(2)).join(' ')}`)
    console.log(`CHECK ${g.key} ≥ ${GOAL}× bare reply-from (req/s, median of same-round ratios): ${rpsRatio.toFixed(3)} → ${rpsRatio >= GOAL ? 'PASS' : 'FAIL'}`)
    console.log(`CHECK ${g.key} CPU/req ≤ ${(1 / GOAL).toFixed(3)}× bare reply-from (the steadier figure): ${cpuRatio.toFixed(3)} → ${cpuRatio <= 1 / GOAL ? 'PASS' : 'FAIL'}`)
  }
  for (const key of ['gateway', 'gateway+flags', 'reply-from']) {
    if (split.has(key)) console.log(`round-robin split over the upstreams, ${key}: ${(split.get(key) ?? []).join(' / ')}`)
  }
  const bad = setups.reduce((n, s) => n + s.runs.reduce((a, r) => a + r.bad, 0), 0)
  if (bad > 0) console.log(`!! ${bad} errors, timeouts or non-2xx answers over all runs`)
}

/**
 * One extra run of each gateway setup and of bare reply-from under the inspector's CPU profiler and
 * allocation sampler; each gateway is then compared with reply-from per request.
 */
async function profile (setups: Setup[]): Promise<void> {
  const dir = mkdtempSync(join(os.tmpdir(), 'fhg-prof-'))
  const got = new Map<string, { name: string, requests: number, files: string[] }>()
  for (const s of setups.filter((x) => x.key !== 'http-proxy' && x.key !== 'direct')) {
    await s.measured.profileStart()
    const run = await measure(s.measured, { url: s.url, connections: CONNECTIONS, duration: DURATION })
    const files = await s.measured.profileStop(join(dir, s.key))
    console.log(`profiled run ${s.key}: ${fmt(run.rps)} req/s, ${fmt(run.cpuPerReq, 1)} µs CPU/req with the profilers on; ${files.join(' ')}`)
    got.set(s.key, { name: s.key, requests: run.completed, files })
  }
  const b = got.get('reply-from')!
  for (const [key, g] of got) {
    if (key === 'reply-from') continue
    for (const i of [0, 1]) {
      console.log('\n' + compare({ name: g.name, b: readProfile(g.files[i]), requests: g.requests }, { name: b.name, b: readProfile(b.files[i]), requests: b.requests }))
    }
  }
  const g = got.get('gateway')!
  for (const i of [0, 1]) console.log(`\n### gateway alone\n\n${report(readProfile(g.files[i]), g.requests)}`)
}

async function memory (upstreamUrls: string[]): Promise<void> {
  console.log(`\nMemory: a fresh gateway child with the CLI's log and its access log on (pino, buffered destination to /dev/null), ${CONNECTIONS} connections; RSS after a full GC (raw RSS before it in brackets)`)
  const gw = await startChild('gateway-mem', 'access-ab', { upstreams: upstreamUrls })
  const url = `http://127.0.0.1:${gw.port}/on/mem` // the route with the access-log hook
  try {
    let proxied = 0
    const drive = async (amount: number): Promise<void> => {
      const r = await load({ url, connections: CONNECTIONS, amount })
      proxied += r.requests.total
      const bad = r.errors + r.timeouts + r.non2xx
      if (bad > 0) console.log(`  !! ${bad} errors/non-2xx`)
    }
    const point = async (label: string): Promise<{ label: string, raw: number, rss: number, heap: number }> => {
      const raw = (await gw.stats()).rss
      const s = await gw.gc()
      console.log(`  ${label.padEnd(28)} proxied ${fmt(proxied).padStart(9)}  RSS ${mb(s.rss)} [${mb(raw)}]  heapUsed ${mb(s.heapUsed)}  (${conditions()})`)
      return { label, raw, rss: s.rss, heap: s.heapUsed }
    }
    await drive(20_000)
    const idle = await point('idle, after 20k warm-up')
    await drive(100_000 - proxied)
    const k100 = await point('after 100k')
    await drive(1_000_000 - proxied)
    const m1 = await point('after 1M')
    const growth = (m1.rss - k100.rss) / k100.rss
    console.log('\n' + table(['point', 'RSS after GC', 'RSS before GC', 'heapUsed'],
      [idle, k100, m1].map((p) => [p.label, mb(p.rss), mb(p.raw), mb(p.heap)])))
    console.log(`CHECK RSS after 1M within 10 % of after 100k: ${(100 * growth).toFixed(1)} % → ${Math.abs(growth) <= 0.1 ? 'PASS' : 'FAIL'}`)
  } finally {
    await gw.stop()
  }
}

async function main (): Promise<void> {
  const acVersion = (createRequire(import.meta.url)('autocannon/package.json') as { version: string }).version
  console.log(`proxy bench ${new Date().toISOString()}  node ${process.version}  ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'})  autocannon ${acVersion}`)
  console.log(`${ROUNDS} rounds x ${DURATION} s, warm-up ${fmt(WARMUP)} requests per setup, ${CONNECTIONS} connections; ${conditions()}`)
  const upstreams = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const urls = upstreams.map((u) => u.url)
  if (!MEMORY_ONLY) {
    const gw = await startChild('gateway', 'gateway', { upstreams: urls })
    const rf = await startChild('reply-from', 'reply-from', { upstreams: urls })
    const hp = await startChild('http-proxy', 'http-proxy', { upstreams: urls })
    console.log(`gateway: ${gw.info}`)
    const setups: Setup[] = [
      { key: 'gateway', label: 'gateway (round_robin, 2 upstreams, metrics on)', measured: gw, url: gw.url, runs: [] },
      { key: 'reply-from', label: 'bare @fastify/reply-from (no base, RR in getUpstream)', measured: rf, url: rf.url, runs: [] },
      { key: 'http-proxy', label: '@fastify/http-proxy (1 upstream)', measured: hp, url: hp.url, runs: [] },
      { key: 'direct', label: 'upstream directly (CPU is the upstream\'s)', measured: upstreams[0], url: upstreams[0].url, runs: [] },
    ]
    if (GATEWAY_FLAGS.length > 0) {
      const gf = await startChild('gateway+flags', 'gateway', { upstreams: urls }, GATEWAY_FLAGS)
      setups.splice(1, 0, { key: 'gateway+flags', label: `gateway, node ${GATEWAY_FLAGS.join(' ')}`, measured: gf, url: gf.url, runs: [] })
    }
    await throughput(setups, upstreams)
    if (PROFILE) await profile(setups)
    await Promise.all(setups.filter((s) => s.key !== 'direct').map((s) => s.measured.stop()))
  }
  if (MEMORY) await memory(urls)
  else console.log('\n(memory phase skipped: npm run bench -- --memory, or BENCH_MEMORY=1)')
  console.log(`\ndone; ${conditions()}`)
}

try {
  await main()
} catch (err) {
  console.error(err)
  process.exitCode = 1
} finally {
  killAll()
}
