// A demo upstream (also the one the tests start), run as its own process. Prints one JSON line
// {port, id} when listening. Behaviour is set by env (UPSTREAM_ID, UPSTREAM_PORT, UPSTREAM_DELAY,
// UPSTREAM_STATUS) and changed at run time with POST /__control {status, delay, healthStatus, healthFlap}.
// GET /__stats gives counters. Paths: /slow/<ms>, /status/<code>, /big/<bytes>, /truncate/<bytes>, /hop; anything else echoes.
import http from 'node:http'
import { createHash } from 'node:crypto'

const id = process.env.UPSTREAM_ID ?? `up-${process.pid}`
const state = {
  status: Number(process.env.UPSTREAM_STATUS ?? 200),
  delay: Number(process.env.UPSTREAM_DELAY ?? 0),
  healthStatus: Number(process.env.UPSTREAM_HEALTH_STATUS ?? 200),
  healthFlap: false,
}
const stats = { requests: 0, byMethod: {}, byPath: {}, aborted: 0, completed: 0, healthChecks: 0 }
let flip = false

function json (res, status, body, headers = {}) {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x')
  if (url.pathname === '/__stats') return json(res, 200, { id, ...stats })
  if (url.pathname === '/__control') {
    let data = ''
    req.on('data', (c) => { data += c })
    req.on('end', () => { Object.assign(state, JSON.parse(data || '{}')); json(res, 200, { id, state }) })
    return
  }
  if (url.pathname === '/health') {
    stats.healthChecks++
    let s = state.healthStatus
    if (state.healthFlap) { flip = !flip; s = flip ? 200 : 503 }
    return json(res, s, { id, status: s < 400 ? 'ok' : 'sick' })
  }
  stats.requests++
  stats.byMethod[req.method] = (stats.byMethod[req.method] ?? 0) + 1
  stats.byPath[url.pathname] = (stats.byPath[url.pathname] ?? 0) + 1
  const hash = createHash('sha256')
  let bodyBytes = 0
  let finished = false
  req.on('data', (c) => { bodyBytes += c.length; hash.update(c) })
  res.on('close', () => { if (!finished) stats.aborted++ })
  req.on('end', () => {
    const delayMatch = /\/slow\/(\d+)/.exec(url.pathname)
    const delay = delayMatch ? Number(delayMatch[1]) : state.delay
    setTimeout(() => {
      if (res.destroyed) return
      const statusMatch = /\/status\/(\d{3})/.exec(url.pathname)
      const status = statusMatch ? Number(statusMatch[1]) : state.status
      if (url.pathname.endsWith('/hop')) {
        res.writeHead(200, {
          'content-type': 'text/plain',
          connection: 'keep-alive, x-secret-hop',
          'x-secret-hop': 'must-not-pass',
          'keep-alive': 'timeout=5',
          'proxy-authenticate': 'Basic',
          'x-end-to-end': 'kept',
        })
        finished = true
        stats.completed++
        return res.end('hop')
      }
      const cut = /\/truncate\/(\d+)/.exec(url.pathname)
      if (cut) {
        // declares n bytes, sends half, then drops the connection: an upstream dying in the middle of a body
        const n = Number(cut[1])
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n })
        res.write(Buffer.alloc(Math.floor(n / 2), 7))
        setTimeout(() => { finished = true; stats.completed++; res.destroy() }, 20)
        return
      }
      const bigMatch = /\/big\/(\d+)/.exec(url.pathname)
      if (bigMatch) {
        const n = Number(bigMatch[1])
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n })
        const chunk = Buffer.alloc(64 * 1024, 7)
        let left = n
        const pump = () => {
          while (left > 0) {
            const part = left >= chunk.length ? chunk : chunk.subarray(0, left)
            left -= part.length
            if (!res.write(part)) return res.once('drain', pump)
          }
          finished = true
          stats.completed++
          res.end()
        }
        return pump()
      }
      finished = true
      stats.completed++
      json(res, status, {
        id,
        method: req.method,
        url: req.url,
        headers: req.headers,
        bodyBytes,
        bodySha256: hash.digest('hex'),
      }, { 'x-upstream-id': id, 'x-custom-response': 'yes' })
    }, delay)
  })
})
server.keepAliveTimeout = 10_000
server.listen(Number(process.env.UPSTREAM_PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port, id }) + '\n')
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
