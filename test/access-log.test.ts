// The node's log as the CLI runs it (config `log`): one access line per request written when its response
// ends, nothing per request with `requests: off`, a file destination flushed on SIGTERM, GATEWAY_LOG_LEVEL.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { startCliNode, type CliNode } from './helpers/node.js'
import { until } from './helpers/poll.js'
import { freePort } from './helpers/redis.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'fhg-access-log-'))

let ups: UpstreamProcess[]
let deadPort: number
t.before(async () => {
  ups = await startUpstreams(1, 'al')
  deadPort = await freePort() // nothing listens: every try there is a connect failure
})
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

interface Access {
  level: number, time: number, msg: string, reqId: string, method: string, path: string, status: number, route: string | null,
  upstream: string | null, target: string | null, tries: number, ms: number, bytesIn: number | null, bytesOut: number | null, ip: string
}

function configFile (name: string, log: string): string {
  const p = join(dir, name)
  writeFileSync(p, `
node: { id: ${name}, port: 0 }
upstreams:
  api:
    targets: [ { id: api-1, url: ${ups[0].url} } ]
  dead:
    targets: [ { id: dead-1, url: "http://127.0.0.1:${deadPort}" } ]
    failover: { maxRetries: 0 }
routes:
  - { path: /api, upstream: api }
  - { path: /limited, upstream: api, rateLimit: { algorithm: fixed_window, limit: 1, window: 1m } }
  - { path: /dead, upstream: dead }
${log}
`)
  return p
}

/** A GET over its own connection; the raw path is sent as is (quotes, backslashes). */
async function send (base: string, path: string): Promise<{ status: number, at: number }> {
  const u = new URL(base)
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path, agent: false }, (res) => {
      res.resume()
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, at: Date.now() }) })
    })
    req.on('error', reject)
    req.end()
  })
}

const accessLines = (lines: string[]): Access[] => lines.flatMap((l) => {
  try {
    const o = JSON.parse(l) as Access
    return o.msg === 'access' ? [o] : []
  } catch { return [] }
})

async function stop (node: CliNode): Promise<void> {
  node.child.kill('SIGTERM')
  const { code } = await node.exit
  await node.closed
  if (code !== 0) throw new Error(`${node.id} exited ${code}`)
}

t.test('access: one line per request, every field, written when the response ended (200, 404, 429, 502)', async (t) => {
  const node = await startCliNode(configFile('gw-access', ''))
  t.teardown(async () => { await node.kill() })
  const sent: Array<{ path: string, status: number, start: number, at: number }> = []
  const go = async (path: string): Promise<void> => {
    const start = Date.now()
    const r = await send(node.address, path)
    sent.push({ path, start, ...r })
  }
  await go('/api/hello?x=1')
  await go('/slow/300') // no route: 404
  await go('/api/slow/300') // the upstream answers after 300 ms
  await go('/limited/a')
  await go('/limited/b') // over the limit: 429
  await go('/dead/x') // connect refused, no retry: 502
  await go('/api/q"uote\\back')
  await go('/health')
  t.same(sent.map((s) => s.status), [200, 404, 200, 200, 429, 502, 400, 200], 'the answers (a backslash in a path is refused: FHG_ERR_BAD_PATH)')
  // the destination is buffered: lines come out within a second (or at the latest when the node exits)
  await until(() => accessLines(node.log).length >= 8, 10_000, '8 access lines')
  await stop(node)
  const lines = accessLines(node.log)
  t.equal(lines.length, 8, 'one line per request, no more')
  t.notOk(node.log.some((l) => l.includes('incoming request') || l.includes('request completed')), 'no Fastify request logs')
  const byPath = new Map(lines.map((l) => [l.path, l]))
  t.same(lines.map((l) => l.path), sent.map((s) => s.path), 'in the order the responses ended')
  for (const s of sent) {
    const l = byPath.get(s.path)!
    t.equal(l.status, s.status, `${s.path}: status`)
    t.equal(l.method, 'GET')
    t.equal(l.level, 30)
    t.equal(l.ip, '127.0.0.1')
    t.match(l.reqId, /^req-\d+$/)
    t.ok(l.time >= s.start && l.time <= s.at + 50, `${s.path}: time is when the response ended`)
    t.ok(typeof l.ms === 'number' && l.ms >= 0 && l.ms <= s.at - s.start + 50, `${s.path}: duration ${l.ms} ms`)
    t.ok(l.bytesIn !== null && l.bytesIn >= `GET ${s.path} HTTP/1.1\r\n`.length, `${s.path}: bytes in ${l.bytesIn}`)
    t.ok(l.bytesOut !== null && l.bytesOut > 17, `${s.path}: bytes out ${l.bytesOut}`)
  }
  t.equal(new Set(lines.map((l) => l.reqId)).size, 8, 'request ids differ')
  t.match(byPath.get('/api/hello?x=1'), { route: '/api', upstream: 'api', target: 'api-1', tries: 1 }, 'proxied: route, upstream, target, tries')
  t.match(byPath.get('/slow/300'), { status: 404, route: null, upstream: null, target: null, tries: 0 }, '404: no route')
  const slow = byPath.get('/api/slow/300')!
  t.ok(slow.ms >= 290 && slow.time - sent[2].start >= 290, `written at the end of a 300 ms response (ms ${slow.ms})`)
  t.match(byPath.get('/limited/b'), { status: 429, route: '/limited', upstream: 'api', target: null, tries: 0 }, '429: the route, not proxied')
  t.match(byPath.get('/dead/x'), { status: 502, route: '/dead', upstream: 'dead', target: 'dead-1', tries: 1 }, '502: the target tried')
  t.match(byPath.get('/api/q"uote\\back'), { status: 400, route: '/*' }, 'a path with a quote and a backslash is valid JSON (refused before routing: the catch-all)')
  t.match(byPath.get('/health'), { route: '/health', upstream: null, tries: 0 }, 'a route of the node itself')
})

t.test('requests: off writes nothing per request', async (t) => {
  const node = await startCliNode(configFile('gw-off', 'log: { requests: off }'))
  t.teardown(async () => { await node.kill() })
  for (const p of ['/api/a', '/nope', '/dead/x', '/api/b']) await send(node.address, p)
  const before = node.log.length
  await stop(node) // exit flushes whatever is buffered
  t.same(accessLines(node.log), [], 'no access line')
  t.notOk(node.log.some((l) => l.includes('incoming request') || l.includes('request completed')), 'no Fastify request logs')
  t.ok(node.log.some((l) => l.includes('Server listening')) && node.log.some((l) => l.includes('shutting down')), 'the node\'s own log stays')
  t.ok(node.log.length - before <= 3, `only shutdown lines came after the requests (${node.log.length - before})`)
})

t.test('destination: a file gets every line, flushed by the SIGTERM drain', async (t) => {
  const file = join(dir, 'gw-file.log')
  const node = await startCliNode(configFile('gw-file', `log: { destination: ${file} }`), { logFile: file })
  t.teardown(async () => { await node.kill() })
  const n = 12
  for (let i = 0; i < n; i++) await send(node.address, `/api/f${i}`)
  // at once, within the periodic flush: lines of a few hundred bytes stay in the 64 KiB buffer until the drain writes them
  node.child.kill('SIGTERM')
  t.same(await node.exit, { code: 0, signal: null }, 'exit 0')
  const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '')
  t.same(accessLines(lines).map((l) => l.path), Array.from({ length: n }, (_, i) => `/api/f${i}`), 'every access line, in order')
  t.ok(lines.some((l) => l.includes('shutting down: draining')), 'the node\'s own lines too')
  t.same(node.log.filter((l) => l.trim() !== ''), [], 'nothing on stdout')
})

t.test('GATEWAY_LOG_LEVEL overrides log.level; a bad one fails boot naming log.level', async (t) => {
  const file = configFile('gw-level', 'log: { level: warn }')
  const node = await startCliNode(file, { env: { GATEWAY_LOG_LEVEL: 'debug' } })
  t.teardown(async () => { await node.kill() })
  await send(node.address, '/api/lvl')
  await until(() => accessLines(node.log).length >= 1, 10_000, 'the access line')
  await stop(node)
  t.ok(node.log.some((l) => l.includes('Server listening')), 'info lines written (the file said warn)')
  t.ok(node.log.some((l) => l.includes('incoming request')), 'debug: Fastify\'s request lines come back')
  const bad = spawnSync(process.execPath, ['--import', 'tsx', 'bin/fastify-ha-gateway.ts', 'validate', '--config', file], {
    cwd: root, env: { ...process.env, GATEWAY_LOG_LEVEL: 'loud' }, encoding: 'utf8',
  })
  t.equal(bad.status, 1, 'invalid')
  t.match(bad.stderr, /log\.level/, 'the path of the bad key')
})
