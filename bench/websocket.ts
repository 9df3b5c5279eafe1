// WebSocket messages/s through the gateway against a direct connection to the upstream (ratio).
// Closed loop: CONNS clients each send a small message and wait for its echo. Upstream and gateway run
// as child processes; the clients run here. Rounds alternate direct / gateway; medians are reported.
// Run: node --import tsx bench/websocket.ts   (BENCH_CONNS, BENCH_SECONDS, BENCH_ROUNDS, BENCH_SIZE)
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import os from 'node:os'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import { median, ratio } from './lib/report.js'

const CONNS = Number(process.env.BENCH_CONNS ?? 32)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const SIZE = Number(process.env.BENCH_SIZE ?? 64)
const role = process.argv[2]

if (role === 'upstream') {
  const { startWsUpstream } = await import('../test/helpers/ws-upstream.js')
  const up = await startWsUpstream('bench')
  console.log(JSON.stringify({ port: up.port }))
} else if (role === 'gateway') {
  const { startNode } = await import('../plugins/gateway.js')
  const { validateConfig } = await import('../lib/config/index.js')
  const node = await startNode(validateConfig({
    node: { id: 'bench', port: 0 },
    metrics: { enabled: true },
    upstreams: { ws: { targets: [{ id: 'u', url: `http://127.0.0.1:${process.argv[3]}` }] } },
    routes: [{ path: '/', upstream: 'ws' }],
  }))
  console.log(JSON.stringify({ port: Number(new URL(node.address).port) }))
} else {
  const children: ChildProcess[] = []
  process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })
  const start = async (...args: string[]): Promise<number> => {
    const c = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(c)
    const [line] = await once(createInterface({ input: c.stdout! }), 'line') as [string]
    return (JSON.parse(line) as { port: number }).port
  }
  const upPort = await start('upstream')
  const gwPort = await start('gateway', String(upPort))
  const payload = Buffer.alloc(SIZE, 97)

  async function run (port: number): Promise<number> {
    const socks = await Promise.all(Array.from({ length: CONNS }, async () => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/bench`)
      await once(ws, 'message') // the greeting
      return ws
    }))
    let count = 0
    let stop = false
    await Promise.all(socks.map(async (ws) => {
      ws.on('message', () => { count++; if (!stop) ws.send(payload) })
      ws.send(payload)
    }))
    const before = count
    const t0 = performance.now()
    await new Promise((resolve) => setTimeout(resolve, SECONDS * 1000))
    const n = count - before
    const rate = n / ((performance.now() - t0) / 1000)
    stop = true
    for (const ws of socks) ws.terminate()
    return rate
  }

  await run(gwPort) // warm up both paths
  await run(upPort)
  const direct: number[] = []
  const gateway: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    direct.push(await run(upPort))
    gateway.push(await run(gwPort))
  }
  const d = median(direct)
  const g = median(gateway)
  console.log(`WebSocket echo, ${CONNS} connections, ${SIZE}-byte messages, ${SECONDS} s x ${ROUNDS} rounds, ${os.cpus().length} CPUs (shared)`)
  console.log(`direct : ${Math.round(d)} msg/s  (rounds ${direct.map(Math.round).join(', ')})`)
  console.log(`gateway: ${Math.round(g)} msg/s  (rounds ${gateway.map(Math.round).join(', ')})`)
  console.log(`ratio  : ${ratio(g, d)}`)
  for (const c of children) c.kill('SIGKILL')
  process.exit(0)
}
