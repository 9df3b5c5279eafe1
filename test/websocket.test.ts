// Upgrade proxying through the gateway with real `ws` clients and servers: echo, binary, ping/pong,
// failover of the connect, refusal per route, metrics, least_connections, idle close and drain (1001).
import t from 'tap'
import http from 'node:http'
import net from 'node:net'
import { once } from 'node:events'
import Fastify, { type FastifyInstance } from 'fastify'
import WebSocket from 'ws'
import { gateway, startNode } from '../plugins/gateway.js'
import { validateConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { startWsUpstream, type WsUpstream } from './helpers/ws-upstream.js'
import { get } from './helpers/gateway.js'
import { until } from './helpers/poll.js'

let a: WsUpstream
let b: WsUpstream
t.before(async () => { [a, b] = await Promise.all([startWsUpstream('ws-a'), startWsUpstream('ws-b')]) })
t.teardown(async () => { await Promise.all([a.close(), b.close()]) })

function config (extra: Partial<GatewayConfigInput> = {}): GatewayConfigInput {
  return {
    node: { id: 'gw-ws', port: 0 },
    upstreams: { live: { targets: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }] } },
    routes: [
      { path: '/ws', upstream: 'live' },
      { path: '/nows', upstream: 'live', websocket: false },
    ],
    ...extra,
  }
}

async function listen (opts: GatewayConfigInput): Promise<{ app: FastifyInstance, url: string, ws: string }> {
  const app = Fastify({ logger: false })
  await app.register(gateway, opts)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as net.AddressInfo).port
  return { app, url: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}` }
}

/** Open a client and read its first message (the upstream's `hello <id>`). */
async function connect (url: string, opts?: WebSocket.ClientOptions): Promise<{ ws: WebSocket, hello: string }> {
  const ws = new WebSocket(url, opts)
  const [msg] = await once(ws, 'message') as [Buffer]
  return { ws, hello: msg.toString() }
}

async function closed (ws: WebSocket): Promise<number> {
  if (ws.readyState === WebSocket.CLOSED) return -1
  const [code] = await once(ws, 'close') as [number]
  return code
}

async function freePort (): Promise<number> {
  const s = net.createServer().listen(0, '127.0.0.1')
  await once(s, 'listening')
  const port = (s.address() as net.AddressInfo).port
  await new Promise((resolve) => s.close(resolve))
  return port
}

t.test('echoes text and binary both ways, ping/pong passes untouched, handshake headers forwarded', async (t) => {
  const { app, ws: base } = await listen(config())
  t.teardown(() => app.close())
  const { ws, hello } = await connect(`${base}/ws/chat?room=1`, { headers: { 'x-client': 'yes' } })
  t.match(hello, /^hello ws-[ab]$/, 'the upstream greets through the gateway')
  ws.send('text frame')
  t.equal(((await once(ws, 'message')) as [Buffer])[0].toString(), 'text frame')
  const bin = Buffer.from([0, 1, 2, 255, 254, 0])
  ws.send(bin)
  const [got, isBinary] = await once(ws, 'message') as [Buffer, boolean]
  t.ok(isBinary, 'binary stays binary')
  t.same([...got], [...bin], 'binary bytes intact')
  const big = Buffer.alloc(1 << 20, 7)
  ws.send(big)
  const [echoed] = await once(ws, 'message') as [Buffer]
  t.equal(echoed.length, big.length, 'a 1 MiB message comes back whole')
  ws.ping(Buffer.from('are you there'))
  const [pong] = await once(ws, 'pong') as [Buffer]
  t.equal(pong.toString(), 'are you there', 'the upstream answered the ping through the tunnel')
  const up = hello.endsWith('ws-a') ? a : b
  const h = up.handshakes[up.handshakes.length - 1]
  t.equal(up.paths[up.paths.length - 1], '/ws/chat?room=1', 'path and query forwarded as is')
  t.equal(h['x-client'], 'yes', 'end-to-end headers forwarded')
  t.equal(h['x-forwarded-proto'], 'http')
  t.equal(h['x-forwarded-for'], '127.0.0.1')
  t.equal(h.host, `127.0.0.1:${up.port}`, 'Host is the target\'s by default')
  t.ok(h['sec-websocket-key'] !== undefined && h.upgrade === 'websocket', 'the handshake itself reached the upstream')
  ws.close(1000, 'bye')
  t.equal(await closed(ws), 1000, 'a normal close passes through')
})

t.test('a dead first target: the connect goes to another one', async (t) => {
  const dead = await freePort()
  const { app, ws: base } = await listen(config({
    upstreams: { live: { targets: [{ id: 'dead', url: `http://127.0.0.1:${dead}` }, { id: 'a', url: a.url }] } },
  }))
  t.teardown(() => app.close())
  for (let i = 0; i < 4; i++) {
    const { ws, hello } = await connect(`${base}/ws`)
    t.equal(hello, 'hello ws-a', `connect ${i} reached the live target`)
    ws.close()
    await closed(ws)
  }
})

t.test('websocket: false refuses upgrades on the route (403); plain requests still pass', async (t) => {
  const { app, url, ws: base } = await listen(config())
  t.teardown(() => app.close())
  const ws = new WebSocket(`${base}/nows/x`)
  ws.on('error', () => {})
  const [, res] = await once(ws, 'unexpected-response') as [unknown, http.IncomingMessage]
  t.equal(res.statusCode, 403)
  let body = ''
  for await (const c of res) body += String(c)
  t.equal(JSON.parse(body).code, 'FHG_ERR_UPGRADE_REFUSED')
  ws.terminate()
  t.equal((await get(`${url}/nows/x`)).status, 200, 'the route still proxies requests')
})

t.test('a route\'s rate limit counts upgrades as requests: over it the handshake gets a 429 with the rate-limit headers', async (t) => {
  const { app, url, ws: base } = await listen(config({
    routes: [{ path: '/ws', upstream: 'live', rateLimit: { algorithm: 'fixed_window', limit: 2, window: '1m' } }],
  }))
  t.teardown(() => app.close())
  for (let i = 0; i < 2; i++) {
    const { ws, hello } = await connect(`${base}/ws/limited`)
    t.match(hello, /^hello ws-/, `upgrade ${i + 1} of 2 passes`)
    ws.close()
    await closed(ws)
  }
  const ws = new WebSocket(`${base}/ws/limited`)
  ws.on('error', () => {})
  const [, res] = await once(ws, 'unexpected-response') as [unknown, http.IncomingMessage]
  t.equal(res.statusCode, 429, 'the third upgrade is refused')
  t.ok(Number(res.headers['retry-after']) >= 1, 'Retry-After')
  t.match(res.headers['ratelimit-policy'], /2;w=60/, 'RateLimit-Policy')
  t.match(res.headers.ratelimit, /r=0/, 'RateLimit: none remaining')
  let body = ''
  for await (const c of res) body += String(c)
  t.equal(JSON.parse(body).code, 'FHG_ERR_RATE_LIMITED')
  ws.terminate()
  t.equal((await get(`${url}/ws/plain`)).status, 429, 'upgrades and requests share the budget')
})

t.test('an upgrade outside the routes is served as an ordinary request; a bad path is refused', async (t) => {
  const { app, ws: base, url } = await listen(config())
  t.teardown(() => app.close())
  const health = await new Promise<number>((resolve, reject) => {
    http.get(`${url}/health`, { headers: { connection: 'upgrade', upgrade: 'websocket' }, agent: false }, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    }).on('error', reject)
  })
  t.equal(health, 200, '/health answers as before')
  const h2c = await new Promise<{ status: number, body: string }>((resolve, reject) => {
    // what `curl --http2 http://...` sends: an h2c upgrade the gateway ignores (the request is proxied plainly)
    http.get(`${url}/ws/plain`, { headers: { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA' }, agent: false }, (res) => {
      let body = ''
      res.on('data', (c) => { body += String(c) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    }).on('error', reject)
  })
  t.equal(h2c.status, 200)
  t.equal(JSON.parse(h2c.body).url, '/ws/plain', 'an h2c upgrade request is proxied as a plain request')
  for (const bad of ['/ws/%2e%2e/admin', '/ws/a%2Fb', '/ws/../x', '/ws/a\\b']) {
    // sent raw (a WebSocket client would normalize the URL first)
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${url}/`, { path: bad, agent: false, headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } })
      req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0) })
      req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0) })
      req.on('error', reject)
      req.end()
    })
    t.equal(status, 400, `${bad} refused`)
  }
})

t.test('metrics count upgrades and open sockets; least_connections sees open sockets as in flight', async (t) => {
  const { app, url, ws: base } = await listen(config({
    upstreams: { live: { strategy: 'least_connections', targets: [{ id: 'a', url: a.url }, { id: 'b', url: b.url }] } },
  }))
  t.teardown(() => app.close())
  const first = await connect(`${base}/ws`)
  const second = await connect(`${base}/ws`)
  t.not(first.hello, second.hello, 'the second socket went to the target without one')
  const targets = app.loadBalancer.upstreams.get('live')!.pool.targets
  t.same(targets.map((x) => x.inFlight), [1, 1], 'each open socket counts as one in flight')
  const m = (await get(`${url}/metrics`)).text
  t.match(m, /proxy_upgrades_total\{route="\/ws",upstream="live"\} 2/)
  t.match(m, /proxy_upgraded_connections\{route="\/ws",upstream="live"\} 2/)
  first.ws.close()
  second.ws.close()
  await Promise.all([closed(first.ws), closed(second.ws)])
  await until(() => targets.every((x) => x.inFlight === 0), 10_000, 'closed sockets to leave the in-flight counts', 25)
  t.pass('closed sockets leave the in-flight counts')
  t.match((await get(`${url}/metrics`)).text, /proxy_upgraded_connections\{route="\/ws",upstream="live"\} 0/)
})

t.test('proxy.timeouts.websocketIdle closes a silent socket; traffic keeps it open', async (t) => {
  const { app, ws: base } = await listen(config({ proxy: { timeouts: { websocketIdle: '400ms' } } }))
  t.teardown(() => app.close())
  const busy = await connect(`${base}/ws`)
  const quiet = await connect(`${base}/ws`)
  const pinger = setInterval(() => { busy.ws.ping() }, 100)
  t.teardown(() => clearInterval(pinger))
  const code = await closed(quiet.ws)
  t.equal(code, 1001, 'the silent socket was closed with 1001')
  t.equal(busy.ws.readyState, WebSocket.OPEN, 'a socket with pings is still open')
  clearInterval(pinger)
  busy.ws.close()
  await closed(busy.ws)
})

t.test('drain: open sockets get drain.timeout, then a 1001 close', async (t) => {
  const node = await startNode(validateConfig(config({ drain: { delay: 0, timeout: '500ms' } })))
  const base = node.address.replace('http:', 'ws:')
  const { ws } = await connect(`${base}/ws`)
  const started = Date.now()
  const code = closed(ws)
  await node.close()
  t.equal(await code, 1001, 'the client got 1001 going away')
  t.ok(Date.now() - started >= 400, 'the socket had the drain time first')
})
