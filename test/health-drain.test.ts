// Graceful drain of a real CLI node under load: SIGTERM in the middle of 20 concurrent request loops.
// Not ready first, serving on (with Connection: close) for drain.delay, every request the gateway accepted
// answered 200, exit 0. Clients that keep sending to the closing node see refused connections, and a
// connection racing the close may be reset before the gateway read it: both only at the close.
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { startCliNode, type CliNode } from './helpers/node.js'

const dir = mkdtempSync(join(tmpdir(), 'fhg-health-drain-'))
const DRAIN_DELAY = 300
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(2, 'dr', { delay: 20 }) })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

async function start (file: string): Promise<CliNode> {
  return await startCliNode(file)
}

interface Outcome { url: string, loop: number, start: number, end: number, status?: number, connection?: string, error?: string, body?: string }

t.test('drain under load: SIGTERM mid-load; every accepted request gets 200, /ready turns 503 first, exit 0', async (t) => {
  const file = join(dir, 'drain.yaml')
  writeFileSync(file, `
node: { id: gw-drain, port: 0 }
upstreams:
  api:
    targets:
      - { id: d-1, url: ${ups[0].url} }
      - { id: d-2, url: ${ups[1].url} }
    healthCheck:
      active: { type: http, path: /health, interval: 500ms, timeout: 400ms }
routes:
  - { path: /api, upstream: api }
drain: { delay: ${DRAIN_DELAY}ms, timeout: 10s }
log: { level: debug } # Fastify's 'incoming request' line per request: what the gateway accepted
`)
  const node = await start(file)
  t.teardown(() => { if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGKILL') })
  // Keep-alive clients, as a load balancer in front would use.
  const agent = new Agent({ keepAliveTimeout: 10_000, connections: 64 })
  t.teardown(() => agent.close())
  for (let i = 0; i < 50; i++) {
    const r = await request(`${node.address}/ready`, { dispatcher: agent })
    await r.body.dump()
    if (r.statusCode === 200) break
    await sleep(50)
  }

  // Warm up (JIT, undici's parser, upstream connections): the first requests of a fresh tsx process are slow.
  await Promise.all(Array.from({ length: 10 }, async () => {
    for (let i = 0; i < 10; i++) {
      const r = await request(`${node.address}/api/warm`, { dispatcher: agent })
      await r.body.dump()
    }
  }))

  const outcomes: Outcome[] = []
  const readyAnswers: Array<{ start: number, at: number, status: number }> = []
  let stop = false
  let sigtermAt = 0
  const loop = async (_: unknown, loop: number): Promise<void> => {
    for (let n = 0; !stop; n++) {
      const o: Outcome = { url: `/api/load/${loop}/${n}`, loop, start: Date.now(), end: 0 }
      try {
        const r = await request(`${node.address}${o.url}`, { dispatcher: agent })
        const body = await r.body.text()
        o.status = r.statusCode
        o.connection = String(r.headers.connection)
        if (r.statusCode !== 200) o.body = body.slice(0, 120)
        if (r.statusCode === 200 && !/"id":"dr-\d"/.test(body)) o.error = `bad body ${body.slice(0, 80)}`
      } catch (err) {
        o.error = (err as { code?: string }).code ?? String(err)
      }
      o.end = Date.now()
      outcomes.push(o)
      if (o.error === 'ECONNREFUSED') await sleep(20) // the listener is gone: do not spin
    }
  }
  // Two pollers back to back: drain.delay is short and the machine may be slow.
  const readyPoll = async (): Promise<void> => {
    while (!stop) {
      const start = Date.now()
      try {
        const r = await request(`${node.address}/ready`, { reset: true })
        await r.body.dump()
        readyAnswers.push({ start, at: Date.now(), status: r.statusCode })
      } catch {
        await sleep(20)
      }
    }
  }
  const loops = [...Array.from({ length: 20 }, loop), readyPoll(), readyPoll()]
  // At least 1 s of load and 40 answers before SIGTERM (the machine may be slow).
  const loadFrom = Date.now()
  while ((Date.now() - loadFrom < 1000 || outcomes.length < 40) && Date.now() - loadFrom < 20_000) await sleep(20)
  sigtermAt = Date.now()
  node.child.kill('SIGTERM')
  const exited = await Promise.race([node.exit, sleep(20_000).then(() => undefined)])
  await sleep(Math.max(0, sigtermAt + 1000 - Date.now())) // ~2 s of load in all
  stop = true
  await Promise.all(loops)

  t.ok(exited !== undefined, 'the node exited within 20 s of SIGTERM')
  await node.closed
  // What the gateway accepted: every proxied request it started handling is logged once as 'incoming request'.
  const accepted = new Set<string>()
  for (const line of node.log) {
    try {
      const l = JSON.parse(line) as { msg?: string, req?: { url?: string } }
      if (l.msg === 'incoming request' && l.req?.url?.startsWith('/api/load/') === true) accepted.add(l.req.url)
    } catch {}
  }
  t.same(exited, { code: 0, signal: null }, 'exit code 0')
  const count = (list: Outcome[], key: (o: Outcome) => string): Record<string, number> => {
    const out: Record<string, number> = {}
    for (const o of list) out[key(o)] = (out[key(o)] ?? 0) + 1
    return out
  }
  const ok = outcomes.filter((o) => o.status === 200 && o.error === undefined)
  const refused = outcomes.filter((o) => o.error === 'ECONNREFUSED')
  const failed = outcomes.filter((o) => !ok.includes(o) && !refused.includes(o))
  const closedAt = Math.min(...refused.map((o) => o.start)) // the listener is gone from then on
  const drainEnds = sigtermAt + DRAIN_DELAY
  const rel = (ms: number): string => `+${ms - sigtermAt} ms`
  t.comment(`${outcomes.length} requests: ${ok.length} × 200, ${refused.length} refused, ${failed.length} other ${JSON.stringify(count(failed, (o) => o.error ?? String(o.status)))}; listener closed at ${rel(closedAt)}`)
  if (process.env.DRAIN_DEBUG !== undefined) for (const o of failed) t.comment(JSON.stringify({ ...o, start: o.start - sigtermAt, end: o.end - sigtermAt }))

  t.ok(outcomes.filter((o) => o.end < sigtermAt).length >= 40, 'load before SIGTERM')
  // Connection: close is only set while draining: a 200 carrying it was served during drain.delay.
  t.ok(ok.some((o) => o.connection === 'close'), `requests are served 200 while draining (${ok.filter((o) => o.connection === 'close').length})`)
  t.ok(Math.max(...ok.map((o) => o.end)) >= drainEnds - 50, `served through drain.delay (last 200 at ${rel(Math.max(...ok.map((o) => o.end)))})`)
  t.ok(refused.length > 0 && closedAt >= drainEnds, `connections refused only once the listener closed, after drain.delay (first at ${rel(closedAt)})`)
  t.same(failed.filter((o) => o.end < drainEnds), [], 'nothing failed during drain.delay')
  const notReadyAt = Math.min(...readyAnswers.filter((r) => r.at > sigtermAt && r.status === 503).map((r) => r.at)) // draining by then
  t.same(ok.filter((o) => o.start > notReadyAt && o.connection !== 'close'), [], 'while draining every answer says Connection: close (keep-alive clients move off before the listener closes)')
  // The bar: every request the gateway accepted got 200.
  const acceptedFailed = outcomes.filter((o) => accepted.has(o.url) && !ok.includes(o))
  t.ok(accepted.size >= ok.length, `the gateway logged ${accepted.size} accepted requests (${ok.length} answered 200)`)
  t.same(acceptedFailed, [], 'every request the gateway accepted got 200')
  t.same(failed.filter((o) => !accepted.has(o.url) && o.status === undefined).filter((o) => o.end < closedAt - 100), [],
    'requests never accepted (connection reset before the gateway read them) fail only at the close')
  // No HTTP answer other than 200: startNode sets return503OnClosing false, so a request read while the
  // listener closes is served, not refused with Fastify's closing 503.
  t.same(failed.filter((o) => o.status !== undefined), [], 'no answer other than 200')
  t.ok(node.log.some((l) => l.includes('shutting down: draining')), 'the drain is logged')

  // Not ready first: a /ready asked once the node was draining (a 200 with Connection: close had come back)
  // answers 503, while the listener is still open. On a busy machine the pollers may miss the short window.
  const drainingBy = Math.min(...ok.filter((o) => o.connection === 'close').map((o) => o.end))
  const askedWhileDraining = readyAnswers.filter((r) => r.start > drainingBy)
  t.ok(readyAnswers.some((r) => r.at < sigtermAt && r.status === 200), '/ready: 200 before SIGTERM')
  t.same(askedWhileDraining.filter((r) => r.status !== 503), [], `/ready asked while draining answers 503 (${askedWhileDraining.length} asked)`)
  t.ok(readyAnswers.some((r) => r.status === 503) || askedWhileDraining.length === 0, `/ready seen 503 before the listener closed (${readyAnswers.filter((r) => r.at > sigtermAt).map((r) => r.status).join(' ')})`)
  t.notOk(readyAnswers.some((r, i) => r.status === 200 && readyAnswers.slice(0, i).some((p) => p.status === 503)), 'never ready again once draining')
})
