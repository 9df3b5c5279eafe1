// Instructions per proxied request, counted by valgrind's callgrind: the CPU-cost comparison of bench:compare
// (issue 13) in a unit that neighbours, clock speed and core sharing do not move. Each setup runs alone under
// `valgrind --tool=callgrind` (every thread of the process counted: JIT compilers, GC helpers, libuv's pool),
// with instrumentation off through its boot and a warm-up; then, per round, the counters are zeroed, a fixed
// number of requests is sent, and the counters dumped. Under valgrind a process runs ~50x slower while its timers
// keep wall-clock time, so what it does when idle (probes, metrics sampling, heartbeats) is counted once per
// setup over an idle spell and its rate taken off each round by the round's wall time. V8's compilers and GC
// come in bursts that land in one round or another; they are counted apart (by function name), and the steady
// figure is the rest, the mutator's.
// Instructions are not time (a cache miss costs no instruction), so read them beside bench:compare's CPU µs.
//   node --import tsx bench/instructions.ts
// Env (or --key=value flags): BENCH_SETUPS (reply-from,http-proxy,cli,cli-off,startnode), BENCH_ROUNDS (3),
//   BENCH_REQUESTS (per round, 2000), BENCH_WARMUP (requests before counting, 4000), BENCH_CONNECTIONS (16),
//   BENCH_IDLE (s of idle counting, 5), BENCH_OUT (also write the Markdown report to this file).
// Needs valgrind (Debian: valgrind) with callgrind_control; runs the CLI from dist/ (npm run build).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Pool } from 'undici'
import { fmt, median, table } from './lib/report.js'
import { benchEnv, cliServer, COMMON_SETUPS, pickSetups, type CliServer } from './lib/cli-process.js'
import { killAll, startChild } from './lib/servers.js'
import { freePort, gatewayConfig } from './lib/setups.js'
import { BODY } from './lib/upstream.js'

const env = benchEnv()
const ROUNDS = Number(env.BENCH_ROUNDS ?? 3)
const REQUESTS = Number(env.BENCH_REQUESTS ?? 2000)
const WARMUP = Number(env.BENCH_WARMUP ?? 4000)
const CONNECTIONS = Number(env.BENCH_CONNECTIONS ?? 16)
const IDLE = Number(env.BENCH_IDLE ?? 5)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLI = join(ROOT, 'dist/bin/fastify-ha-gateway.js')

type Key = 'reply-from' | 'http-proxy' | 'cli' | 'cli-off' | 'startnode'
const ABOUT: Record<Key, string> = COMMON_SETUPS
const KEYS = pickSetups(ABOUT, env.BENCH_SETUPS, 'reply-from,http-proxy,cli,cli-off,startnode')

type Server = CliServer
interface Counts { instructions: number, compile: number, gc: number }
interface Round extends Counts { requests: number, seconds: number }
/** idlePerSecond: the mutator's instructions per second with no traffic (timers, samplers). */
interface Result { key: Key, idlePerSecond: number, rounds: Round[] }

const dir = mkdtempSync(join(os.tmpdir(), 'fhg-instructions-'))
const valgrind = (key: Key): string[] => ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--quiet',
  `--callgrind-out-file=${join(dir, `${key}.%p`)}`]
const mine = new Set<ChildProcess>()
process.on('exit', () => { for (const p of mine) p.kill('SIGKILL') })

/** The CLI as users start it (dist/, as installed), under valgrind; stdout (the access log) to /dev/null. */
async function startCli (key: Key, upstreams: string[]): Promise<Server> {
  const port = await freePort()
  const config: Record<string, unknown> = { ...gatewayConfig(upstreams, port), node: { id: `bench-${key}`, host: '127.0.0.1', port } }
  if (key === 'cli-off') config.log = { requests: 'off' }
  const file = join(dir, `${key}.yaml`)
  writeFileSync(file, JSON.stringify(config, null, 2)) // JSON is YAML
  const [cmd, ...args] = [...valgrind(key), process.execPath, CLI, 'start', '--config', file]
  const proc = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, NODE_ENV: 'production' } })
  mine.add(proc)
  proc.once('exit', () => mine.delete(proc))
  return await cliServer(key, proc, `http://127.0.0.1:${port}`, 300, 'SIGKILL') // under valgrind: boots in ~20 s
}

async function startSetup (key: Key, upstreams: string[]): Promise<Server> {
  if (key === 'cli' || key === 'cli-off') return await startCli(key, upstreams)
  const role = key === 'startnode' ? 'gateway' : key
  const c = await startChild(key, role, { upstreams }, [], { wrap: valgrind(key), startSeconds: 300 })
  return { pid: c.pid, url: c.url, stop: async () => { await c.stop(10_000) } }
}

/** callgrind_control: `-i on` (instrument from now), `-z` (zero the counters), `-d` (dump them to a file). */
function control (pid: number, ...args: string[]): void {
  execFileSync('callgrind_control', [...args, String(pid)], { stdio: 'ignore', timeout: 120_000 })
}

/** Zero the counters, run `work`, dump: the instructions counted meanwhile (every thread) and the wall seconds. */
async function counted (key: Key, pid: number, work: () => Promise<void>): Promise<Counts & { seconds: number }> {
  control(pid, '-z')
  const t0 = process.hrtime.bigint()
  await work()
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const before = new Set(readdirSync(dir))
  control(pid, '-d')
  const dumps = readdirSync(dir).filter((f) => f.startsWith(`${key}.${pid}.`) && !before.has(f))
  if (dumps.length !== 1) throw new Error(`${key}: expected one new callgrind dump, found ${dumps.length}`)
  return { ...share(readFileSync(join(dir, dumps[0]), 'utf8')), seconds }
}

const COMPILER = /compiler::|Compil|Maglev|Parser|Bytecode|Scanner|Sparkplug|baseline::/
const GC = /Heap::|heap::|Scaveng|MarkCompact|Marking|Sweep|Evacuat|MemoryAllocator|RememberedSet|MemoryChunk|::GC|Heap\b/

/**
 * A callgrind dump's instructions, and how many of them were V8's compilers and garbage collector (by the name of
 * the function that ran them, on any thread). Both come in bursts (a reoptimization, a mark-compact) whose place
 * in one round or the next moves a round's total by a third; what remains, the mutator, is steady.
 */
function share (text: string): Counts {
  const names = new Map<string, string>()
  const name = (tok: string): string => {
    const m = /^\((\d+)\)(?: (.*))?$/.exec(tok)
    if (m === null) return tok
    if (m[2] !== undefined) names.set(m[1], m[2])
    return names.get(m[1]) ?? tok
  }
  let fn = ''
  let kind: 'compile' | 'gc' | '' = ''
  let call = false
  const sum = { instructions: 0, compile: 0, gc: 0 }
  for (const line of text.split('\n')) {
    if (line.startsWith('fn=')) {
      fn = name(line.slice(3))
      kind = COMPILER.test(fn) ? 'compile' : GC.test(fn) ? 'gc' : ''
    } else if (line.startsWith('cfn=')) name(line.slice(4))
    else if (line.startsWith('calls=')) call = true
    else if (/^[\d+*-]/.test(line)) {
      if (call) { call = false; continue } // a call's inclusive cost: counted where it was spent
      const n = Number(line.split(' ')[1] ?? 0)
      sum.instructions += n
      if (kind !== '') sum[kind] += n
    }
  }
  return sum
}

/**
 * `amount` GETs, CONNECTIONS at a time, over one pool of kept-alive connections for the whole setup: new
 * connections every round would make every round pay the JIT's reoptimizations on connection close (measured:
 * a third of a round's instructions went to the compiler when each round opened its own).
 */
async function send (pool: Pool, amount: number): Promise<number> {
  let left = amount
  let bad = 0
  const one = async (): Promise<void> => {
    while (left > 0) {
      left--
      const res = await pool.request({ method: 'GET', path: '/bench?x=1' })
      const body = await res.body.text()
      if (res.statusCode !== 200 || body !== BODY) bad++
    }
  }
  await Promise.all(Array.from({ length: CONNECTIONS }, one))
  if (bad > 0) throw new Error(`${bad} of ${amount} answers not 200 with the upstream's body`)
  return amount
}

const mutator = (c: Counts): number => c.instructions - c.compile - c.gc
/** A round's mutator instructions per request, its idle rate taken off by the round's wall time. */
const steady = (x: Round, idlePerSecond: number): number => (mutator(x) - idlePerSecond * x.seconds) / x.requests
const k = (n: number): string => fmt(n / 1000, 1)

async function measure (key: Key, upstreams: string[], say: (s: string) => void): Promise<Result> {
  const t0 = Date.now()
  const server = await startSetup(key, upstreams)
  const pool = new Pool(server.url, { connections: CONNECTIONS, pipelining: 1, keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000, headersTimeout: 120_000, bodyTimeout: 120_000 })
  try {
    const res = await fetch(`${server.url}/bench?x=1`)
    const text = await res.text()
    if (res.status !== 200 || text !== BODY) throw new Error(`${key}: unexpected answer ${res.status} ${text.slice(0, 200)}`)
    await send(pool, WARMUP) // JIT warm, instrumentation still off
    control(server.pid, '-i', 'on')
    await send(pool, Math.min(1000, WARMUP)) // code retranslated with instrumentation
    const idle = await counted(key, server.pid, async () => { await new Promise((resolve) => setTimeout(resolve, IDLE * 1000)) })
    const idlePerSecond = mutator(idle) / idle.seconds
    const rounds: Round[] = []
    for (let r = 0; r < ROUNDS; r++) {
      let requests = 0
      const c = await counted(key, server.pid, async () => { requests = await send(pool, REQUESTS) })
      const x: Round = { requests, ...c }
      rounds.push(x)
      say(`${key} round ${r + 1}/${ROUNDS}: ${fmt(requests)} requests in ${c.seconds.toFixed(1)} s; k instructions/request: ` +
        `mutator ${k(steady(x, idlePerSecond))} (less idle), all ${k(c.instructions / requests)} (compilers ${k(c.compile / requests)}, GC ${k(c.gc / requests)})`)
    }
    say(`${key}: idle ${fmt(idlePerSecond / 1e6, 2)}M instructions/s; ${((Date.now() - t0) / 1000).toFixed(0)} s in all`)
    return { key, idlePerSecond, rounds }
  } finally {
    await pool.destroy()
    await server.stop()
  }
}

async function main (): Promise<void> {
  if (!existsSync(CLI)) throw new Error('run npm run build first (the CLI runs from dist/)')
  try { execFileSync('callgrind_control', ['-h'], { stdio: 'ignore' }) } catch { throw new Error('needs valgrind with callgrind_control (Debian: apt-get install valgrind)') }
  const out: string[] = []
  const say = (line = ''): void => { console.log(line); out.push(line) }
  const vg = execFileSync('valgrind', ['--version'], { encoding: 'utf8' }).trim()
  say(`# bench/instructions.ts ${new Date().toISOString()}`)
  say()
  say(`node ${process.version}, ${vg}; ${ROUNDS} rounds x ${fmt(REQUESTS)} requests after ${fmt(WARMUP)} uncounted, ${CONNECTIONS} connections; idle counted over ${IDLE} s`)
  const upChildren = [await startChild('upstream-1', 'upstream'), await startChild('upstream-2', 'upstream')]
  const upstreams = upChildren.map((u) => u.url)
  const results: Result[] = []
  for (const key of KEYS) results.push(await measure(key, upstreams, say))
  const per = (r: Result): number[] => r.rounds.map((x) => steady(x, r.idlePerSecond))
  const all = (r: Result): number[] => r.rounds.map((x) => x.instructions / x.requests)
  const base = results.find((r) => r.key === 'reply-from')!
  const b = median(per(base))
  const bAll = median(all(base))
  const range = (xs: number[]): string => `${k(Math.min(...xs))}-${k(Math.max(...xs))}`
  say()
  say('Medians over the rounds. Mutator: every instruction but those of V8\'s compilers and GC, less the setup\'s idle ' +
    'rate × the round\'s wall time. All: every instruction counted, compilers and GC included (they come in bursts).')
  say()
  say(table(['setup', 'mutator k instr/request (range)', '× bare', 'all k instr/request (range)', '× bare, all', 'idle M instr/s'],
    results.map((r) => [`${r.key}: ${ABOUT[r.key]}`, `${k(median(per(r)))} (${range(per(r))})`, (median(per(r)) / b).toFixed(3),
      `${k(median(all(r)))} (${range(all(r))})`, (median(all(r)) / bAll).toFixed(3), fmt(r.idlePerSecond / 1e6, 2)])))
  const hp = results.find((r) => r.key === 'http-proxy')
  if (hp !== undefined) {
    for (const r of results.filter((x) => x.key.startsWith('cli') || x.key === 'startnode')) {
      say(`${r.key}: @fastify/http-proxy runs ${(median(per(hp)) / median(per(r))).toFixed(3)}× its mutator instructions per request (all: ${(median(all(hp)) / median(all(r))).toFixed(3)}×)`)
    }
  }
  if (env.BENCH_OUT !== undefined) writeFileSync(env.BENCH_OUT, out.join('\n') + '\n')
  await Promise.all(upChildren.map(async (u) => await u.stop()))
}

try {
  await main()
} catch (err) {
  console.error(err)
  process.exitCode = 1
} finally {
  killAll()
  for (const p of mine) p.kill('SIGKILL')
}
