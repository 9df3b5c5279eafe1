// Gateway nodes as real CLI processes (`fastify-ha-gateway start --config file`), for the end-to-end tests.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { startRedis, type RedisProcess } from './redis.js'
import { startUpstreams, type UpstreamProcess } from './upstream.js'

const root = fileURLToPath(new URL('../..', import.meta.url))

export interface CliNode {
  /** A label for failure messages (the node id, usually). */
  id: string
  child: ChildProcess
  /** `http://127.0.0.1:<port>`, from the "Server listening at" log line. */
  address: string
  /** Settles when the process exits. */
  exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  /** Settles once stdout is fully read (every log line is in `log`). */
  closed: Promise<unknown>
  /** Every stdout line (pino JSON), in order. */
  log: string[]
  /** What the process wrote on stderr so far. */
  stderr (): string
  readonly running: boolean
  /** Send `signal` (default SIGKILL) and wait for the exit; a no-op once it exited. */
  kill (signal?: NodeJS.Signals): Promise<void>
}

export interface StartCliNodeOptions {
  /** Label in messages. Default: the file name. */
  id?: string
  /** Extra environment variables (added to this process's). */
  env?: Record<string, string>
  /** ms to wait for the listening line. Default 45 s (a fresh tsx process on a loaded machine is slow). */
  timeout?: number
  /** Print the last log lines when the node dies of anything but SIGKILL/SIGTERM or exit 0. Default true. */
  reportCrash?: boolean
  /** The node logs to this file (config log.destination), not stdout: the listening line is looked for there. */
  logFile?: string
}

const live = new Set<ChildProcess>()
process.once('exit', () => { for (const c of live) c.kill('SIGKILL') })

/** Spawn `start --config file`; resolves once the node listens. Rejects with its output if it exits or times out first. */
export async function startCliNode (file: string, opts: StartCliNodeOptions = {}): Promise<CliNode> {
  const id = opts.id ?? file
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/fastify-ha-gateway.ts', 'start', '--config', file], {
    cwd: root, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  live.add(child)
  const closed = once(child, 'close')
  const exit = once(child, 'exit').then(([code, signal]) => {
    live.delete(child)
    return { code: code as number | null, signal: signal as NodeJS.Signals | null }
  })
  const log: string[] = []
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const lines = createInterface({ input: child.stdout! })
  lines.on('line', (line) => { log.push(line) })
  const timeout = opts.timeout ?? 45_000
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${id}: no "Server listening at" within ${timeout} ms\n${log.join('\n')}\n${stderr}`)) }, timeout)
    const found = (line: string): boolean => {
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line)
      if (m !== null) { clearTimeout(timer); resolve(m[1]) }
      return m !== null
    }
    lines.on('line', found)
    const file = opts.logFile
    if (file !== undefined) {
      const poll = setInterval(() => {
        let text = ''
        try { text = readFileSync(file, 'utf8') } catch {}
        if (text.split('\n').some(found) || child.exitCode !== null || child.signalCode !== null) clearInterval(poll)
      }, 50)
    }
    void exit.then(({ code, signal }) => { clearTimeout(timer); reject(new Error(`${id}: exited (${code ?? signal}) before listening\n${log.join('\n')}\n${stderr}`)) })
  }).catch((err: unknown) => {
    child.kill('SIGKILL')
    throw err
  })
  if (opts.reportCrash !== false) {
    void exit.then(({ code, signal }) => {
      if (signal !== 'SIGKILL' && signal !== 'SIGTERM' && code !== 0) console.error(`${id} exited (${code ?? signal}):\n${log.slice(-15).join('\n')}\n${stderr}`)
    })
  }
  return {
    id,
    child,
    address,
    exit,
    closed,
    log,
    stderr: () => stderr,
    get running () { return child.exitCode === null && child.signalCode === null },
    async kill (signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill(signal)
      await exit
    },
  }
}

/** SIGKILL every node still running (for teardown). */
export async function killAll (nodes: Iterable<CliNode>): Promise<void> {
  await Promise.all([...nodes].map(async (n) => await n.kill('SIGKILL')))
}

/** What a cluster test file runs on: one redis-server, `n` upstream processes, and the CLI nodes it starts. */
export interface ClusterFixture {
  redis: RedisProcess
  ups: UpstreamProcess[]
}

/**
 * Starts Redis and `n` upstreams (ids `<prefix>-1`...) and registers one teardown on `t` that kills every node
 * in `nodes` (the file pushes the nodes it starts), the upstreams and Redis.
 */
export async function startClusterFixture (t: { teardown: (fn: () => Promise<void>) => void }, n: number, prefix: string, nodes: CliNode[]): Promise<ClusterFixture> {
  const [redis, ups] = await Promise.all([startRedis(), startUpstreams(n, prefix)])
  t.teardown(async () => {
    await killAll(nodes)
    await Promise.all(ups.map(async (u) => await u.kill()))
    await redis.stop()
  })
  return { redis, ups }
}
