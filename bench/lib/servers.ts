// Benchmark child processes: spawn, talk to over IPC, and always kill (exit, SIGINT, SIGTERM).
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'

/** What a child reports about itself: process-wide CPU (µs) and memory (bytes). */
export interface ChildStats {
  cpuUser: number
  cpuSystem: number
  rss: number
  heapUsed: number
  /** Requests the child answered itself (upstreams only; 0 for proxies). */
  served: number
  /** Open client sockets (upstreams only). */
  sockets: number
  /** Garbage collections so far, and their total pause (ms). */
  gcCount: number
  gcMs: number
  /** The same for mark-compact (major) collections only. */
  gcMajorCount: number
  gcMajorMs: number
}

/** Messages between the parent and bench/lib/child.ts. */
export interface ChildRequest { id: number, op: 'stats' | 'gc' | 'exit' | 'prof-start' | 'prof-stop', arg?: string }
export type ChildReply =
  | { id: number, stats: ChildStats, files?: string[], error?: string }
  | { type: 'ready', port: number, info: string }
  | { type: 'error', message: string }

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url))
const live = new Set<ChildProcess>()

export class BenchChild {
  readonly name: string
  readonly port: number
  /** How the child built its setup (e.g. "plugins/gateway.ts startNode"). */
  readonly info: string
  private readonly proc: ChildProcess
  private seq = 0
  private readonly waiting = new Map<number, (m: Extract<ChildReply, { id: number }>) => void>()

  /** Path every load run and check requests (default ''). */
  readonly path: string

  constructor (name: string, proc: ChildProcess, port: number, info: string, path = '') {
    this.name = name
    this.path = path
    this.proc = proc
    this.port = port
    this.info = info
    proc.on('message', (m: ChildReply) => {
      if ('id' in m) {
        const done = this.waiting.get(m.id)
        this.waiting.delete(m.id)
        done?.(m)
      }
    })
  }

  get url (): string { return `http://127.0.0.1:${this.port}${this.path}` }
  get pid (): number { return this.proc.pid ?? -1 }

  private ask (op: ChildRequest['op'], arg?: string): Promise<Extract<ChildReply, { id: number }>> {
    const id = ++this.seq
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.waiting.delete(id); reject(new Error(`${this.name}: no answer to ${op}`)) }, 30_000)
      this.waiting.set(id, (m) => {
        clearTimeout(timer)
        if (m.error !== undefined) reject(new Error(`${this.name}: ${op}: ${m.error}`))
        else resolve(m)
      })
      this.proc.send({ id, op, arg } satisfies ChildRequest)
    })
  }

  async stats (): Promise<ChildStats> { return (await this.ask('stats')).stats }
  /** Runs a full GC in the child (it is started with --expose-gc), then reports. */
  async gc (): Promise<ChildStats> { return (await this.ask('gc')).stats }
  /** Start the child's CPU profiler and allocation sampler. */
  async profileStart (): Promise<void> { await this.ask('prof-start') }
  /** Stop them; the child writes `<prefix>.cpuprofile` and `<prefix>.heapprofile`. */
  async profileStop (prefix: string): Promise<string[]> { return (await this.ask('prof-stop', prefix)).files ?? [] }

  /** Ask the child to exit (lets --cpu-prof write its file); SIGKILL after `graceMs`. */
  async stop (graceMs = 5_000): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    const exited = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()))
    try { this.proc.send({ id: ++this.seq, op: 'exit' } satisfies ChildRequest) } catch { this.proc.kill('SIGKILL') }
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), graceMs)
    await exited
    clearTimeout(timer)
  }
}

/** How a child is started: `wrap` runs node under another program (e.g. valgrind and its flags). */
export interface ChildOptions { wrap?: string[], startSeconds?: number }

/**
 * Start bench/lib/child.ts in `role` ('upstream', 'gateway', 'reply-from', 'http-proxy')
 * and wait for its port. `execArgv` adds node flags (e.g. --cpu-prof).
 */
export async function startChild (name: string, role: string, args: unknown = {}, execArgv: string[] = [], o: ChildOptions = {}): Promise<BenchChild> {
  const nodeArgs = ['--expose-gc', '--import', 'tsx', ...execArgv]
  const wrap = o.wrap ?? []
  const proc = fork(CHILD, [role, JSON.stringify(args)], {
    ...(wrap.length > 0 ? { execPath: wrap[0], execArgv: [...wrap.slice(1), process.execPath, ...nodeArgs] } : { execArgv: nodeArgs }),
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, NODE_ENV: 'production' },
  })
  live.add(proc)
  proc.once('exit', () => live.delete(proc))
  const startSeconds = o.startSeconds ?? 30
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`${name} did not start in ${startSeconds} s`)) }, startSeconds * 1000)
    proc.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`${name} exited early (${code ?? signal})`)) })
    proc.on('message', function onReady (m: ChildReply) {
      if (!('type' in m)) return
      clearTimeout(timer)
      proc.off('message', onReady)
      if (m.type === 'ready') resolve(new BenchChild(name, proc, m.port, m.info))
      else { proc.kill('SIGKILL'); reject(new Error(`${name}: ${m.message}`)) }
    })
  })
}

/** SIGKILL every child still running (used on exit and on signals). */
export function killAll (): void {
  for (const p of live) p.kill('SIGKILL')
  live.clear()
}

process.on('exit', killAll)
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killAll()
    process.stderr.write(`\nbench: ${sig}, children killed\n`)
    process.exit(130)
  })
}

/** PEERS.md's pinned layout is possible: two CPUs or more and taskset, unless BENCH_PIN=0. */
export const CAN_PIN = process.env.BENCH_PIN !== '0' && os.cpus().length >= 2 && existsSync('/usr/bin/taskset')

/** Pin a process (all its threads) to `cpus` (a taskset list such as "0" or "1"); nothing when pinning is off. */
export function pin (pid: number, cpus: string): void {
  if (CAN_PIN && pid > 0) execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
}
