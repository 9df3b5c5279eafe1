// Real redis-server processes for tests: free loopback ports, own data dirs, no persistence, cleaned up.
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const DIR_PREFIX = 'fhg-redis-'

export interface RedisProcess {
  port: number
  url: string
  /** pid of the current redis-server (changes on restart). */
  readonly pid: number
  /** Send a signal: SIGSTOP / SIGCONT pause and resume it; SIGKILL (the default) also waits for the exit. */
  kill (signal?: NodeJS.Signals): Promise<void>
  /** Kill it for good and remove its data dir. */
  stop (): Promise<void>
  /** Start it again on the same port (killing it first if it runs); resolves on the first PONG. */
  restart (): Promise<void>
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory', '10mb']. */
  args?: string[]
}

const live = new Set<ChildProcess>()
process.once('exit', () => { for (const c of live) c.kill('SIGKILL') })
let swept = false

/** Start a standalone redis-server on a free port; resolves once it answers PING. */
export async function startRedis (opts: StartRedisOptions = {}): Promise<RedisProcess> {
  sweepLeftovers()
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX))
  writeFileSync(join(dir, 'owner'), String(process.pid))
  let port = 0
  let child: ChildProcess | undefined
  for (let attempt = 0; child === undefined; attempt++) {
    port = await freePort()
    try {
      child = await spawnRedis(port, dir, opts.args ?? [])
    } catch (err) {
      if (attempt >= 4) throw err // another process took the port between probe and bind: try another
    }
  }
  let current: ChildProcess = child
  const handle: RedisProcess = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid () { return current.pid! },
    async kill (signal = 'SIGKILL') { await signalChild(current, signal) },
    async stop () {
      await signalChild(current, 'SIGKILL')
      rmSync(dir, { recursive: true, force: true })
    },
    async restart () {
      await signalChild(current, 'SIGKILL')
      current = await spawnRedis(port, dir, opts.args ?? [])
    },
  }
  return handle
}

export interface RedisClusterProcess {
  /** Client ports of the masters (as created; a failover may promote a replica). */
  ports: number[]
  /** Client ports of every node, masters first, then replicas. */
  all: number[]
  /** Seed list for `new Cluster(nodes)`. */
  nodes: Array<{ host: string, port: number }>
  /** Signal one node (index into ports, or into all), as RedisProcess.kill. */
  kill (index: number, signal?: NodeJS.Signals): Promise<void>
  /** Signal the node listening on `port`. */
  killPort (port: number, signal?: NodeJS.Signals): Promise<void>
  stop (): Promise<void>
}

export interface StartRedisClusterOptions {
  /** Replicas per master (default 0). */
  replicas?: number
  /** Extra redis-server arguments of every node, e.g. ['--cluster-require-full-coverage', 'no']. */
  args?: string[]
  /** cluster-node-timeout, ms (default 1000): a dead master is failed over within about twice this. */
  nodeTimeout?: number
}

/**
 * Start a Redis Cluster of `masters` masters, each with `replicas` replicas (default none; ~2.1 s: Redis waits before
 * cluster_state:ok). Bus ports are picked free and set explicitly (port + 10000 can pass 65535).
 */
export async function startRedisCluster (masters = 3, opts: StartRedisClusterOptions = {}): Promise<RedisClusterProcess> {
  const replicas = opts.replicas ?? 0
  const total = masters * (1 + replicas)
  sweepLeftovers()
  const dirs: string[] = []
  const children: ChildProcess[] = []
  const ports: number[] = []
  try {
    for (let i = 0; i < total; i++) {
      const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX))
      writeFileSync(join(dir, 'owner'), String(process.pid))
      dirs.push(dir)
      const port = await freePort()
      const bus = await freePort()
      children.push(await spawnRedis(port, dir, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--cluster-node-timeout', String(opts.nodeTimeout ?? 1000), '--cluster-port', String(bus), ...(opts.args ?? [])]))
      ports.push(port)
    }
    // redis-cli makes the first `masters` nodes masters and the rest their replicas
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas', String(replicas), '--cluster-yes'], { timeout: 20_000 })
    const until = Date.now() + 15_000
    for (const port of ports) {
      while (!/cluster_state:ok/.test(await command(port, ['CLUSTER', 'INFO']).catch(() => ''))) {
        if (Date.now() > until) throw new Error(`cluster node ${port} never reached cluster_state:ok`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    // replicas in sync with their masters: each can be promoted
    for (const port of ports.slice(masters)) {
      while (!/master_link_status:up/.test(await command(port, ['INFO', 'replication']).catch(() => ''))) {
        if (Date.now() > until) throw new Error(`cluster replica ${port} never synced with its master`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
  } catch (err) {
    for (const c of children) await signalChild(c, 'SIGKILL')
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
    throw err
  }
  return {
    ports: ports.slice(0, masters),
    all: ports,
    nodes: ports.slice(0, masters).map((port) => ({ host: '127.0.0.1', port })),
    async kill (index, signal = 'SIGKILL') { await signalChild(children[index], signal) },
    async killPort (port, signal = 'SIGKILL') { await signalChild(children[ports.indexOf(port)], signal) },
    async stop () {
      for (const c of children) await signalChild(c, 'SIGKILL')
      for (const d of dirs) rmSync(d, { recursive: true, force: true })
    },
  }
}

async function spawnRedis (port: number, dir: string, extra: string[]): Promise<ChildProcess> {
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  let output = ''
  const keep = (chunk: Buffer): void => { output = (output + chunk.toString()).slice(-2000) }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  child.once('exit', () => live.delete(child))
  writeFileSync(join(dir, 'redis.pid'), String(child.pid))
  const until = Date.now() + 5000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server on port ${port} exited: ${output}`)
    if (await ping(port)) return child
    if (Date.now() > until) {
      await signalChild(child, 'SIGKILL')
      throw new Error(`redis-server on port ${port} never answered PING: ${output}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function signalChild (child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  if (signal !== 'SIGKILL' && signal !== 'SIGTERM') {
    child.kill(signal)
    return
  }
  const exited = once(child, 'exit')
  child.kill(signal)
  await exited
}

/** The first port of the kernel's ephemeral range (outbound connections take their local ports from it). */
function ephemeralLow (): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
    if (Number.isInteger(low) && low > 12_000) return low
  } catch {}
  return 32_768
}
const PORT_FLOOR = 10_000
const PORT_CEIL = ephemeralLow()
const handedOut = new Set<number>()

/** Whether `port` can be listened on on 127.0.0.1 now. */
async function canListen (port: number): Promise<boolean> {
  const srv = createServer()
  const ok = await new Promise<boolean>((resolve) => {
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => resolve(true))
  })
  if (ok) { srv.close(); await once(srv, 'close') }
  return ok
}

/**
 * A port no one listens on now, for a process that binds it later. It is taken below the kernel's ephemeral range:
 * a port the OS hands out (listen(0)) is also one any outbound connection of a parallel test may take as its local
 * port in the meantime, and then the later listen fails with EADDRINUSE (a CLI node compiled by tsx binds its
 * port up to a minute after it was chosen).
 */
export async function freePort (): Promise<number> {
  return await freePorts(1)
}

/**
 * `n` consecutive free ports (a program that listens on base, base+1, ...), below the ephemeral range as freePort's;
 * the first. A port is handed out once per process: callers that pick several before binding any (a Redis
 * Cluster's node and bus ports) never get the same one twice.
 */
export async function freePorts (n: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const base = PORT_FLOOR + Math.floor(Math.random() * (PORT_CEIL - PORT_FLOOR - n + 1))
    const run = Array.from({ length: n }, (_, k) => base + k)
    if (run.some((p) => handedOut.has(p))) continue
    if ((await Promise.all(run.map(canListen))).every(Boolean)) {
      for (const p of run) handedOut.add(p)
      return base
    }
  }
  throw new Error(`no ${n} free port(s) in ${PORT_FLOOR}-${PORT_CEIL - 1} after 200 tries`)
}

async function ping (port: number): Promise<boolean> {
  return await command(port, ['PING']).then((r) => r.startsWith('+PONG'), () => false)
}

/** One command over a raw socket (RESP); resolves with the raw reply text. */
async function command (port: number, args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1')
    let reply = ''
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('timeout')) }, 1000)
    sock.on('connect', () => { sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`) })
    sock.on('data', (d) => {
      reply += d.toString()
      // Simple and bulk replies both end with CRLF once complete
      const bulk = /^\$(\d+)\r\n/.exec(reply)
      if (bulk === null ? reply.endsWith('\r\n') : reply.length >= bulk[0].length + Number(bulk[1]) + 2) {
        clearTimeout(timer)
        sock.end()
        resolve(reply)
      }
    })
    sock.on('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

/** Kill redis-servers left behind by a test runner that died (its data dir names our prefix and a dead owner). */
function sweepLeftovers (): void {
  if (swept) return
  swept = true
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(DIR_PREFIX)) continue
    const dir = join(tmpdir(), name)
    let owner: number
    try {
      owner = Number(readFileSync(join(dir, 'owner'), 'utf8'))
    } catch {
      continue // being created right now by a parallel test file
    }
    if (alive(owner)) continue
    try {
      const pid = Number(readFileSync(join(dir, 'redis.pid'), 'utf8'))
      // Only a redis-server started with this very dir: never an unrelated process that reused the pid
      if (alive(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) process.kill(pid, 'SIGKILL')
    } catch {}
    rmSync(dir, { recursive: true, force: true })
  }
}

function alive (pid: number): boolean {
  if (!(pid > 0)) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
