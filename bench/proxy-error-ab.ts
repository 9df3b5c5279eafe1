// The cost of the proxy's own error answer (a 502 for a refused connection) and of a proxied 200, for two copies of
// the code (issue 17 part 3: errors raised through Fastify instead of written by hand), in one process, rounds
// alternating A/B so both see the same machine load.
//   node --import tsx bench/proxy-error-ab.ts <rootA> <rootB>      each root holds plugins/load-balancer.ts
// Env: AB_ROUNDS (5), AB_REQUESTS (per case and round, 4000), AB_WARMUP (2000), AB_CONCURRENCY (8).
// Figure: process CPU (user + system) per request, the gateway and the in-process undici client together (the same
// client both sides); the upstream runs in a child process and is not counted. The 502's connect is refused by
// the kernel at once (a closed loopback port).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { Pool } from 'undici'

const ROUNDS = Number(process.env.AB_ROUNDS ?? 5)
const REQUESTS = Number(process.env.AB_REQUESTS ?? 4000)
const WARMUP = Number(process.env.AB_WARMUP ?? 2000)
const CONCURRENCY = Number(process.env.AB_CONCURRENCY ?? 8)
const roots = process.argv.slice(2)
if (roots.length !== 2) throw new Error('usage: proxy-error-ab.ts <rootA> <rootB>')

async function freePort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as net.AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

const upstream = spawn(process.execPath, ['-e', `
  const http = require('node:http')
  const body = '{"message":"hello!"}'
  const s = http.createServer((q, r) => { r.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }); r.end(body) })
  s.keepAliveTimeout = 65000
  s.listen(0, '127.0.0.1', () => console.log(s.address().port))`], { stdio: ['ignore', 'pipe', 'inherit'] })
const [line] = await once(createInterface({ input: upstream.stdout! }), 'line') as [string]
const live = `http://127.0.0.1:${line}`
const dead = `http://127.0.0.1:${await freePort()}`

interface Side { root: string, app: FastifyInstance, pool: Pool }
async function side (root: string): Promise<Side> {
  const lb = (await import(pathToFileURL(resolve(root, 'plugins/load-balancer.ts')).href)).default
  const app = Fastify({ logger: false })
  await app.register(lb, {
    upstreams: { ok: { targets: [{ id: 'o', url: live }] }, gone: { targets: [{ id: 'g', url: dead }] } },
    failover: { gone: { maxRetries: 0 } },
  })
  app.get('/ok', { config: { upstream: 'ok' } }, (_req, reply) => reply.proxy())
  app.get('/gone', { config: { upstream: 'gone' } }, (_req, reply) => reply.proxy())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const pool = new Pool(`http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`, { connections: CONCURRENCY })
  return { root, app, pool }
}

async function run (s: Side, path: string, n: number, status: number): Promise<number> {
  let left = n
  const cpu0 = process.cpuUsage()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (left-- > 0) {
      const res = await s.pool.request({ method: 'GET', path })
      await res.body.dump()
      if (res.statusCode !== status) throw new Error(`${s.root}${path}: ${res.statusCode}`)
    }
  }))
  const cpu = process.cpuUsage(cpu0)
  return (cpu.user + cpu.system) / n
}

const sides = [await side(roots[0]), await side(roots[1])]
const cases = [['/ok', 200], ['/gone', 502]] as const
const figures = new Map<string, number[]>()
for (const s of sides) for (const [path, status] of cases) await run(s, path, WARMUP, status)
for (let r = 0; r < ROUNDS; r++) {
  for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
    for (const [path, status] of cases) {
      const key = `${s.root} ${path}`
      figures.set(key, [...(figures.get(key) ?? []), await run(s, path, REQUESTS, status)])
    }
  }
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
console.log(`CPU µs/request (gateway + client), median of ${ROUNDS} rounds x ${REQUESTS} requests, concurrency ${CONCURRENCY}`)
for (const [key, xs] of figures) console.log(`${key.padEnd(60)} ${median(xs).toFixed(1).padStart(7)}   [${xs.map((x) => x.toFixed(0)).join(' ')}]`)
for (const s of sides) { await s.pool.close(); await s.app.close() }
upstream.kill()
