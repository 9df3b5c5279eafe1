// Issue 11 point 4: slow and greedy clients are cut. node.timeouts { headers, body, keepAlive } and
// node.maxConnections, over raw TCP connections (small values here; the defaults are 60 s, 60 s, 75 s, no cap).
import t from 'tap'
import net from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { parseResponse } from './helpers/raw-http.js'

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(1, 'slow') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

async function listen (node: Record<string, unknown>): Promise<{ app: FastifyInstance, port: number }> {
  const app = Fastify({ logger: false })
  await app.register(gateway, {
    node: { id: 'gw-slow', port: 0, ...node },
    upstreams: { up: { targets: [{ id: 'up-1', url: ups[0].url }] } },
    routes: [{ path: '/up', upstream: 'up' }],
  } as GatewayConfigInput)
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, port: (app.server.address() as { port: number }).port }
}

interface Conn { socket: net.Socket, closed: Promise<void>, isClosed: () => boolean, text: () => string }

async function connect (port: number): Promise<Conn> {
  const socket = net.connect(port, '127.0.0.1')
  let text = ''
  let closed = false
  socket.setEncoding('latin1')
  socket.on('data', (c: string) => { text += c })
  socket.on('error', () => {})
  const done = new Promise<void>((resolve) => socket.once('close', () => { closed = true; resolve() }))
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('close', () => reject(new Error('closed before connecting'))) })
  return { socket, closed: done, isClosed: () => closed, text: () => text }
}

/** Resolves true when `p` settles within `ms` (a generous deadline on a busy machine: this is no speed assertion). */
async function within (p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms) })
  const r = await Promise.race([p.then(() => true), late])
  clearTimeout(timer)
  return r
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const upstreamStats = async (): Promise<{ requests: number, aborted: number }> => await ups[0].stats()

t.test('a client whose body stalls past timeouts.body is cut, and its upstream request is aborted', async (t) => {
  const { app, port } = await listen({ timeouts: { body: '400ms', headers: '5s', keepAlive: '10s' } })
  t.teardown(() => app.close())
  const before = await upstreamStats()
  const c = await connect(port)
  // larger than failover.maxRetryBodySize: the body streams to the upstream as it comes
  c.socket.write(`POST /up/upload HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${1024 * 1024}\r\n\r\n`)
  c.socket.write(Buffer.alloc(128 * 1024, 1))
  for (let i = 0; i < 400 && (await upstreamStats()).requests === before.requests; i++) await sleep(25)
  t.equal((await upstreamStats()).requests, before.requests + 1, 'the upstream is receiving the body')
  // a trickle below the timeout keeps the client: one byte every 100 ms for a second
  for (let i = 0; i < 10; i++) { c.socket.write(Buffer.alloc(1, 1)); await sleep(100) }
  t.notOk(c.isClosed(), 'a client sending a chunk within every timeouts.body is kept')
  t.ok(await within(c.closed, 15_000), 'then it stalls: the gateway closes the connection')
  let aborted = 0
  for (let i = 0; i < 400; i++) {
    aborted = (await upstreamStats()).aborted - before.aborted
    if (aborted > 0) break
    await sleep(25)
  }
  t.equal(aborted, 1, 'the upstream request was aborted')
})

t.test('a body that ends after its answer went out leaves the keep-alive timer running', async (t) => {
  const { app, port } = await listen({ timeouts: { body: '5s', headers: '5s', keepAlive: '400ms' } })
  t.teardown(() => app.close())
  const c = await connect(port)
  // refused in onRequest (a bad path): answered before the body is read; the rest of the body comes after
  c.socket.write('POST /up/%2e%2e/x HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\n12345')
  for (let i = 0; i < 400 && parseResponse(c.text()) === undefined; i++) await sleep(25)
  t.equal(parseResponse(c.text())?.status, 400, 'answered early')
  await sleep(50)
  c.socket.write('67890')
  t.ok(await within(c.closed, 15_000), 'the idle connection is still closed by timeouts.keepAlive')
})

t.test('a request head not complete within timeouts.headers is cut', async (t) => {
  const { app, port } = await listen({ timeouts: { headers: '400ms', body: '5s', keepAlive: '10s' } })
  t.teardown(() => app.close())
  const c = await connect(port)
  c.socket.write('GET /up/x HTTP/1.1\r\nhost: x\r\n')
  t.ok(await within(c.closed, 15_000), 'the connection is closed')
  t.match(c.text(), /^(HTTP\/1\.1 408|$)/, 'with a 408 or nothing')
  const idle = await connect(port)
  t.ok(await within(idle.closed, 15_000), 'a connection that never sends a byte is closed too')
})

t.test('an idle keep-alive connection is closed after timeouts.keepAlive', async (t) => {
  const { app, port } = await listen({ timeouts: { keepAlive: '400ms', headers: '5s', body: '5s' } })
  t.teardown(() => app.close())
  const c = await connect(port)
  c.socket.write('GET /up/ka HTTP/1.1\r\nhost: x\r\n\r\n')
  for (let i = 0; i < 400 && parseResponse(c.text()) === undefined; i++) await sleep(25)
  t.equal(parseResponse(c.text())?.status, 200, 'the request is answered and the connection kept')
  t.ok(await within(c.closed, 15_000), 'the idle connection is closed')
})

t.test('maxConnections: connections past the cap are refused at accept', async (t) => {
  const { app, port } = await listen({ maxConnections: 2, timeouts: { keepAlive: '30s', headers: '30s', body: '30s' } })
  t.teardown(() => app.close())
  const held = [await connect(port), await connect(port)]
  for (const c of held) c.socket.write('GET /up/held HTTP/1.1\r\nhost: x\r\n\r\n')
  for (let i = 0; i < 400 && held.some((c) => parseResponse(c.text()) === undefined); i++) await sleep(25)
  t.same(held.map((c) => parseResponse(c.text())?.status), [200, 200], 'two connections served and kept')
  const extra = await connect(port).catch(() => undefined)
  if (extra !== undefined) {
    extra.socket.write('GET /up/extra HTTP/1.1\r\nhost: x\r\n\r\n')
    t.ok(await within(extra.closed, 15_000), 'the third connection is closed')
    t.equal(extra.text(), '', 'without an answer')
  } else t.pass('the third connection is refused')
  t.same(held.map((c) => c.isClosed()), [false, false], 'the two held ones stay open')
  held[0].socket.destroy()
  await held[0].closed
  // the server counts the freed slot once it sees the close: poll
  let answered: number | undefined
  for (let i = 0; i < 40 && answered === undefined; i++) {
    const next = await connect(port).catch(() => undefined)
    if (next === undefined) { await sleep(50); continue }
    next.socket.write('GET /up/next HTTP/1.1\r\nhost: x\r\n\r\n')
    await within(new Promise<void>((resolve) => { const check = (): void => { if (parseResponse(next.text()) !== undefined || next.isClosed()) resolve(); else setTimeout(check, 25) }; check() }), 5000)
    answered = parseResponse(next.text())?.status
    next.socket.destroy()
    if (answered === undefined) await sleep(50)
  }
  t.equal(answered, 200, 'a slot freed: a new connection is served')
  held[1].socket.destroy()
})
