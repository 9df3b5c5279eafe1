// Streaming responses through the gateway with real upstreams and a browser-like client (node:http, as an
// EventSource reads): SSE heads and events as they come, body timeouts (504 before a byte, a clean cut after,
// routes[].timeouts), large upstream heads (proxy.maxHeaderSize), 103 Early Hints and trailers.
import t, { type Test } from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import { performance } from 'node:perf_hooks'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'

/** An upstream made of one request handler, on a free loopback port. */
async function upstream (handler: http.RequestListener): Promise<{ url: string, server: http.Server }> {
  const server = http.createServer(handler)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, server }
}

async function listen (t: Test, opts: GatewayConfigInput): Promise<string> {
  const app: FastifyInstance = Fastify({ logger: false })
  await app.register(gateway, opts)
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

function closeAll (server: http.Server): void {
  server.closeAllConnections()
  server.close()
}

interface Read { status: number, headers: http.IncomingHttpHeaders, body: string, trailers: NodeJS.Dict<string>, error: Error | undefined, info: Array<{ statusCode: number, headers: http.IncomingHttpHeaders }> }

/** A GET through node:http, read to its end (or its failure). */
async function read (url: string, opts: http.RequestOptions = {}): Promise<Read> {
  return await new Promise((resolve, reject) => {
    const info: Read['info'] = []
    const req = http.get(url, { agent: false, ...opts }, (res) => {
      let body = ''
      const done = (error?: Error): void => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body, trailers: res.trailers, error, info }) }
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => { done() })
      res.on('error', done)
      res.on('aborted', () => { done(new Error('aborted')) })
    })
    req.on('information', (i) => { info.push({ statusCode: i.statusCode, headers: i.headers }) })
    req.on('error', reject)
  })
}

async function metricsText (url: string): Promise<string> {
  return (await read(`${url}/metrics`)).body
}

t.test('SSE: the head reaches the client within 100 ms of the upstream\'s flush, and each event as it is sent', async (t) => {
  const EVENTS = 4
  let flushedAt = 0
  const sentAt: number[] = []
  const up = await upstream((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    if (req.url === '/events/warm') { res.end('data: warm\n\n'); return }
    res.flushHeaders()
    flushedAt = performance.now()
    let n = 0
    const timer = setInterval(() => {
      sentAt.push(performance.now())
      res.write(`id: ${n}\ndata: event ${n}\n\n`)
      if (++n === EVENTS) { clearInterval(timer); res.end() }
    }, 300)
    req.on('close', () => { clearInterval(timer) })
  })
  t.teardown(() => { closeAll(up.server) })
  const url = await listen(t, {
    node: { id: 'gw-sse', port: 0 },
    upstreams: { events: { targets: [{ id: 'e', url: up.url }] } },
    routes: [{ path: '/events', upstream: 'events', timeouts: { body: 0 } }],
  })

  // one short stream first: the upstream connection is pooled and the code paths warm, so what is timed is the
  // proxying of a head and its events, not a first request's connect and compile
  t.equal((await read(`${url}/events/warm`)).body, 'data: warm\n\n')

  const got = await new Promise<{ headAt: number, status: number, type: string | undefined, events: Array<{ at: number, text: string }> }>((resolve, reject) => {
    // what an EventSource sends
    const req = http.get(`${url}/events`, { agent: false, headers: { accept: 'text/event-stream', 'cache-control': 'no-cache' } }, (res) => {
      const headAt = performance.now()
      const events: Array<{ at: number, text: string }> = []
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        buf += c
        let i: number
        while ((i = buf.indexOf('\n\n')) >= 0) {
          events.push({ at: performance.now(), text: buf.slice(0, i) })
          buf = buf.slice(i + 2)
        }
      })
      res.on('end', () => { resolve({ headAt, status: res.statusCode ?? 0, type: res.headers['content-type'], events }) })
    })
    req.on('error', reject)
  })
  t.equal(got.status, 200)
  t.equal(got.type, 'text/event-stream')
  const headLag = got.headAt - flushedAt
  t.ok(headLag < 100, `head ${headLag.toFixed(1)} ms after the upstream flushed it (< 100 ms), before the first event (${(sentAt[0] - flushedAt).toFixed(0)} ms later)`)
  t.ok(got.headAt < sentAt[0], 'the head came before the upstream sent its first event')
  t.equal(got.events.length, EVENTS)
  for (let i = 0; i < EVENTS; i++) {
    t.equal(got.events[i].text, `id: ${i}\ndata: event ${i}`)
    // as it comes: before the upstream's next event (300 ms later), so nothing is held back to be sent with it
    // (the 100 ms bound is the head's; one process runs upstream, gateway and client, so a loaded machine's stall counts here)
    const lag = got.events[i].at - sentAt[i]
    t.ok(lag < 300, `event ${i} arrived ${lag.toFixed(1)} ms after it was sent (< 300 ms, the time to the next event)`)
    if (i + 1 < EVENTS) t.ok(got.events[i].at < sentAt[i + 1], `event ${i} arrived before event ${i + 1} was sent: nothing held back`)
  }
})

t.test('body timeouts: a stalled small body is a 504, a stalled stream is cut and counted; routes[].timeouts override the upstream\'s', async (t) => {
  const up = await upstream((req, res) => {
    if (req.url === '/small') {
      // a small sized body (taken whole) that stalls after 10 of its 100 bytes
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' })
      res.write('0123456789')
    } else if (req.url === '/stream') {
      // a chunked body that stalls after its first chunk
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.write('first chunk;')
    } else if (req.url?.startsWith('/slow-events') === true) {
      // an event stream that is silent 700 ms between events (past the 300 ms upstream body timeout)
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write('data: a\n\n')
      setTimeout(() => { res.end('data: b\n\n') }, 700)
    } else if (req.url === '/slow-head') {
      const timer = setTimeout(() => { res.end('late') }, 3000)
      req.on('close', () => { clearTimeout(timer) })
    } else res.end('ok')
  })
  t.teardown(() => { closeAll(up.server) })
  const url = await listen(t, {
    node: { id: 'gw-body-timeouts', port: 0 },
    upstreams: { stall: { targets: [{ id: 's', url: up.url }], timeouts: { body: 300, headers: 5000 }, failover: { maxRetries: 0 } } },
    routes: [
      { path: '/slow-events', upstream: 'stall', timeouts: { body: 0 } },
      { path: '/slow-head', upstream: 'stall', timeouts: { headers: 300 } },
      { path: '/', upstream: 'stall' },
    ],
  })

  const small = await read(`${url}/small`)
  t.equal(small.status, 504, 'nothing was sent yet: 504')
  t.equal(JSON.parse(small.body).code, 'FHG_ERR_UPSTREAM_TIMEOUT')
  t.equal(small.headers['content-length'], String(Buffer.byteLength(small.body)), 'none of the upstream\'s headers are left on the answer')

  const stream = await read(`${url}/stream`)
  t.equal(stream.status, 200, 'the head went out')
  t.equal(stream.body, 'first chunk;', 'what came before the stall reached the client')
  t.ok(stream.error !== undefined, 'then the response was cut: the client sees it incomplete')
  // the count is made when the cut happens: poll the scrape
  let m = ''
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    m = await metricsText(url)
    if (/proxy_streams_cut_total\{route="\/",upstream="stall"\} 1/.test(m)) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.match(m, /proxy_streams_cut_total\{route="\/",upstream="stall"\} 1/, 'counted')

  const events = await read(`${url}/slow-events`)
  t.equal(events.status, 200)
  t.equal(events.error, undefined, 'routes[].timeouts.body: 0 lets a stream stay silent past the upstream\'s body timeout')
  t.equal(events.body, 'data: a\n\ndata: b\n\n')

  const asked = Date.now()
  const head = await read(`${url}/slow-head`)
  // undici's parser timer ticks every ~0.5 s: a 300 ms headers timeout fires within about a second
  t.equal(head.status, 504, 'routes[].timeouts.headers: 300 ms cuts a head the upstream\'s 5 s would wait for')
  t.ok(Date.now() - asked < 2500, 'well before the upstream\'s 3 s answer')
  t.equal(JSON.parse(head.body).code, 'FHG_ERR_UPSTREAM_TIMEOUT')
})

t.test('proxy.maxHeaderSize: a 40 KiB upstream head passes; a 100 KiB one is a 502 that does not count against the target', async (t) => {
  const up = await upstream((req, res) => {
    const size = req.url === '/40k' ? 40 * 1024 : req.url === '/100k' ? 100 * 1024 : 0
    if (size > 0) res.setHeader('x-big', 'b'.repeat(size))
    res.setHeader('content-type', 'text/plain')
    res.end('body')
  })
  t.teardown(() => { closeAll(up.server) })
  const url = await listen(t, {
    node: { id: 'gw-head-size', port: 0 },
    upstreams: {
      big: {
        targets: [{ id: 'b', url: up.url }],
        // one failure would eject the target and open its circuit
        healthCheck: { passive: { consecutiveFailures: 1 } },
        circuitBreaker: { consecutiveFailures: 1 },
      },
    },
    routes: [{ path: '/', upstream: 'big' }],
  })
  const big = { maxHeaderSize: 256 * 1024 } // the test client reads large heads too
  const ok = await read(`${url}/40k`, big)
  t.equal(ok.status, 200)
  t.equal(ok.headers['x-big']?.length, 40 * 1024, 'the 40 KiB header arrived whole (past undici\'s 16 KiB default)')
  t.equal(ok.body, 'body')

  for (let i = 0; i < 3; i++) {
    const tooBig = await read(`${url}/100k`, big)
    t.equal(tooBig.status, 502)
    t.equal(JSON.parse(tooBig.body).code, 'FHG_ERR_UPSTREAM_HEADERS_TOO_LARGE')
    t.equal(tooBig.headers['x-big'], undefined)
  }
  const after = await read(`${url}/small`)
  t.equal(after.status, 200, 'the target was neither ejected nor its circuit opened')
  const m = await metricsText(url)
  t.match(m, /circuit_state\{upstream="big",target="b"\} 0/, 'circuit closed')
})

t.test('103 Early Hints and trailers pass through to the client', async (t) => {
  const up = await upstream((_req, res) => {
    res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' })
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' })
      res.write('hello ')
      res.write('world')
      res.addTrailers({ 'x-checksum': 'sha256-abc', 'x-count': '2' })
      res.end()
    }, 50)
  })
  t.teardown(() => { closeAll(up.server) })
  const url = await listen(t, {
    node: { id: 'gw-passthrough', port: 0 },
    upstreams: { hints: { targets: [{ id: 'h', url: up.url }] } },
    routes: [{ path: '/', upstream: 'hints' }],
  })
  const res = await read(`${url}/page`, { headers: { te: 'trailers' } })
  t.equal(res.status, 200)
  t.equal(res.body, 'hello world')
  t.same(res.info.map((i) => i.statusCode), [103], 'one 103 before the answer')
  t.equal(res.info[0]?.headers.link, '</style.css>; rel=preload; as=style')
  t.same(res.trailers, { 'x-checksum': 'sha256-abc', 'x-count': '2' }, 'the trailers after the body')
})
