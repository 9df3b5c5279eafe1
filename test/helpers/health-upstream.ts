// Real upstream servers for the health tests (startHealthUpstream: in-process node:http on 127.0.0.1, a free port
// each, answers and probe path set per test; startHealthChildUpstream: one in a child process to SIGKILL). Not
// helpers/upstream.ts (startUpstream: the demo echo upstream as a child process, for the proxy tests).
import { spawn, type ChildProcess } from 'node:child_process'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'

export type Answer = number | 'hang'

export interface HealthUpstream {
  readonly port: number
  readonly url: string
  /** requests seen, by path */
  readonly hits: Map<string, number>
  /** what the probe path answers; a function is called per probe request */
  probe: Answer | (() => Answer)
  /** what any other path answers */
  traffic: Answer
  /** bodies of POST requests (webhook receiver) */
  readonly bodies: unknown[]
  kill: () => Promise<void>
  restart: () => Promise<void>
  close: () => Promise<void>
}

export async function startHealthUpstream (opts: { probePath?: string, port?: number } = {}): Promise<HealthUpstream> {
  const probePath = opts.probePath ?? '/health'
  const sockets = new Set<import('node:net').Socket>()
  const hanging = new Set<http.ServerResponse>()
  const hits = new Map<string, number>()
  const bodies: unknown[] = []
  const up: HealthUpstream = {
    port: 0, url: '', hits, probe: 200, traffic: 200, bodies,
    kill, restart, close: kill,
  } as HealthUpstream
  let server = make()

  function make (): http.Server {
    const s = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0]
      hits.set(path, (hits.get(path) ?? 0) + 1)
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        if (req.method === 'POST' && chunks.length > 0) {
          try { bodies.push(JSON.parse(Buffer.concat(chunks).toString())) } catch { bodies.push(null) }
        }
        const spec = path === probePath ? up.probe : up.traffic
        const answer = typeof spec === 'function' ? spec() : spec
        if (answer === 'hang') { hanging.add(res); return }
        res.writeHead(answer, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ host: req.headers.host ?? null }))
      })
    })
    s.on('connection', (sock) => { sockets.add(sock); sock.on('close', () => sockets.delete(sock)) })
    return s
  }

  async function listen (port: number): Promise<void> {
    server.listen(port, '127.0.0.1')
    await once(server, 'listening')
    ;(up as { port: number }).port = (server.address() as AddressInfo).port
    ;(up as { url: string }).url = `http://127.0.0.1:${up.port}`
  }

  /** Stop listening and destroy every socket: to a client it looks like a dead process. */
  async function kill (): Promise<void> {
    if (!server.listening) return
    const closed = new Promise((resolve) => server.close(resolve))
    for (const s of sockets) s.destroy()
    for (const r of hanging) r.destroy()
    hanging.clear()
    await closed
  }

  async function restart (): Promise<void> {
    await kill()
    server = make()
    await listen(up.port)
  }

  await listen(opts.port ?? 0)
  return up
}

/** An upstream in its own process, for a real SIGKILL. */
export async function startHealthChildUpstream (): Promise<{ port: number, url: string, child: ChildProcess, kill: () => Promise<void> }> {
  const src = `
    const http = require('node:http')
    const s = http.createServer((req, res) => { res.writeHead(200); res.end('ok') })
    s.listen(0, '127.0.0.1', () => process.stdout.write(String(s.address().port) + '\\n'))
  `
  const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    child.once('error', reject)
    child.stdout?.once('data', (d: Buffer) => resolve(Number(d.toString().trim())))
  })
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    child,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGKILL')
      await once(child, 'exit')
    },
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
