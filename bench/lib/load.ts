// Load generation with autocannon's programmatic API, plus the per-run CPU bookkeeping.
import { createRequire } from 'node:module'
import type { BenchChild, ChildStats } from './servers.js'

/** The part of autocannon's result this bench reads (autocannon ships no types). */
interface AutocannonResult {
  duration: number
  errors: number
  timeouts: number
  non2xx: number
  '2xx': number
  latency: { p50: number, p99: number, average: number }
  requests: { total: number, sent: number }
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

export interface LoadOptions {
  url: string
  connections: number
  /** Seconds; ignored when `amount` is set. */
  duration?: number
  /** Total requests to send, spread over the connections. */
  amount?: number
  /** autocannon worker threads (0: none, the load runs on this thread). */
  workers?: number
}

export interface RunResult {
  /** Completed responses per second of wall time. */
  rps: number
  /** Milliseconds, from autocannon's 2xx latency histogram. */
  p50: number
  p99: number
  completed: number
  bad: number
  seconds: number
  /** CPU µs (user + system) the measured process spent per completed request. */
  cpuPerReq: number
  /** GC pause µs per completed request in the measured process. */
  gcPerReq: number
  /** CPU % of one core used by the measured process over the run. */
  cpuPct: number
  /** CPU % of one core used by this process (the load generator) over the run. */
  loadGenPct: number
}

export async function load (o: LoadOptions): Promise<AutocannonResult> {
  const opts: Record<string, unknown> = { url: o.url, connections: o.connections, pipelining: 1, timeout: 10 }
  if (o.amount !== undefined) opts.amount = o.amount
  else opts.duration = o.duration
  if (o.workers !== undefined && o.workers > 0) opts.workers = o.workers
  return await autocannon(opts)
}

/** One measured run: autocannon against `url`, CPU read from `measured` before and after. */
export async function measure (measured: BenchChild, o: LoadOptions): Promise<RunResult> {
  const before = await measured.stats()
  const genBefore = process.cpuUsage()
  const t0 = process.hrtime.bigint()
  const r = await load(o)
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9
  const gen = process.cpuUsage(genBefore)
  const after = await measured.stats()
  const cpu = cpuMicros(after) - cpuMicros(before)
  const completed = r.requests.total
  return {
    rps: completed / seconds,
    p50: r.latency.p50,
    p99: r.latency.p99,
    completed,
    bad: r.errors + r.timeouts + r.non2xx,
    seconds,
    cpuPerReq: completed > 0 ? cpu / completed : NaN,
    gcPerReq: completed > 0 ? 1000 * (after.gcMs - before.gcMs) / completed : NaN,
    cpuPct: cpu / (seconds * 1e4),
    loadGenPct: (gen.user + gen.system) / (seconds * 1e4),
  }
}

export function cpuMicros (s: ChildStats): number { return s.cpuUser + s.cpuSystem }
