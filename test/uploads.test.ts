// Issue 11 point 2: real clients' uploads work (curl sends `Expect: 100-continue` above 1 MB), and trouble a
// client causes (leaving mid-upload, a request undici refuses) never counts against a target nor triggers a retry.
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Fastify, { type FastifyInstance } from 'fastify'
import { gateway } from '../plugins/gateway.js'
import type { GatewayConfigInput } from '../lib/config/index.js'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'

const run = promisify(execFile)
let ups: UpstreamProcess[]
let app: FastifyInstance
let url: string
let port: number
const dir = mkdtempSync(join(tmpdir(), 'fhg-uploads-'))

t.before(async () => {
  ups = await startUpstreams(3, 'upl')
  const config: GatewayConfigInput = {
    node: { id: 'gw-upl', port: 0 },
    upstreams: {
      files: {
        targets: [{ id: 'files-1', url: ups[0].url }, { id: 'files-2', url: ups[1].url }],
        healthCheck: { passive: { consecutiveFailures: 3, baseEjectionTime: '30s' } },
        failover: { maxRetries: 2 },
        circuitBreaker: { consecutiveFailures: 3, openDuration: '30s' },
      },
      // one target: three failures in a row would eject it (and open its circuit)
      one: {
        targets: [{ id: 'one-1', url: ups[2].url }],
        healthCheck: { passive: { consecutiveFailures: 3, baseEjectionTime: '30s' } },
        circuitBreaker: { consecutiveFailures: 3, openDuration: '30s' },
      },
    },
    routes: [{ path: '/files', upstream: 'files' }, { path: '/one', upstream: 'one' }],
  }
  app = Fastify({ logger: false })
  await app.register(gateway, config)
  await app.listen({ host: '127.0.0.1', port: 0 })
  port = (app.server.address() as { port: number }).port
  url = `http://127.0.0.1:${port}`
})
t.teardown(async () => {
  await app?.close()
  await Promise.all(ups.map(async (u) => await u.kill()))
  rmSync(dir, { recursive: true, force: true })
})

/** A file of `mb` MiB of random bytes, and its sha256. */
function makeFile (name: string, mb: number): { path: string, sha256: string } {
  const path = join(dir, name)
  const hash = createHash('sha256')
  const fd = openSync(path, 'w')
  const chunk = randomBytes(1024 * 1024)
  for (let i = 0; i < mb; i++) {
    chunk[0] = i & 0xff // every MiB differs
    hash.update(chunk)
    writeSync(fd, chunk)
  }
  closeSync(fd)
  return { path, sha256: hash.digest('hex') }
}

async function curlUpload (file: string, route = '/files'): Promise<{ status: number, body: any }> {
  // curl's defaults: Expect: 100-continue above 1 MB
  const { stdout } = await run('curl', ['-s', '-X', 'POST', '--data-binary', `@${file}`, '-w', '\n%{http_code}', `${url}${route}/upload`], { maxBuffer: 1 << 20 })
  const i = stdout.lastIndexOf('\n')
  let body: unknown
  try { body = JSON.parse(stdout.slice(0, i)) } catch { body = stdout.slice(0, i) }
  return { status: Number(stdout.slice(i + 1)), body }
}

function targets (): Array<Record<string, unknown>> {
  const s = app.loadBalancer.status()
  return [...s.files.targets, ...s.one.targets]
}

const totalRequests = async (): Promise<number> => (await Promise.all(ups.map(async (u) => (await u.stats()).requests))).reduce((a, b) => a + b, 0)

t.test('curl uploads of 3 MB (three times) and 200 MB arrive whole, and no target is ejected', async (t) => {
  const small = makeFile('3mb.bin', 3)
  for (let i = 0; i < 3; i++) {
    const r = await curlUpload(small.path, '/one')
    t.equal(r.status, 200, `3 MB upload ${i + 1}: 200`)
    t.equal(r.body?.bodySha256, small.sha256, `3 MB upload ${i + 1}: sha256 equal at the upstream`)
    t.notOk('expect' in (r.body?.headers ?? {}), 'Expect is not passed upstream')
  }
  const big = makeFile('200mb.bin', 200)
  const r = await curlUpload(big.path)
  t.equal(r.status, 200, '200 MB upload: 200')
  t.equal(r.body?.bodyBytes, 200 * 1024 * 1024, '200 MB upload: every byte')
  t.equal(r.body?.bodySha256, big.sha256, '200 MB upload: sha256 equal at the upstream')
  rmSync(big.path)
  for (const tg of targets()) {
    t.equal(tg.ejected, false, `${String(tg.id)} is not ejected`)
    t.equal(tg.circuit, 'closed', `${String(tg.id)}: circuit closed`)
  }
})

/** Start a 4 MiB POST, send 1 MiB of it, wait until an upstream is reading it, then cut the connection. */
async function abortMidUpload (before: number, route = '/files', holdMs = 0): Promise<void> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.on('error', () => {})
  socket.write(`POST ${route}/upload HTTP/1.1\r\nhost: gw.test\r\ncontent-type: application/octet-stream\r\ncontent-length: ${4 * 1024 * 1024}\r\n\r\n`)
  socket.write(Buffer.alloc(1024 * 1024, 1))
  for (let i = 0; i < 200 && await totalRequests() <= before; i++) await new Promise((resolve) => setTimeout(resolve, 25))
  if (holdMs > 0) await new Promise((resolve) => setTimeout(resolve, holdMs))
  socket.destroy()
}

t.test('clients leaving mid-upload count against no target and are never retried', async (t) => {
  const before = await totalRequests()
  const abortedBefore = (await Promise.all(ups.map(async (u) => (await u.stats()).aborted))).reduce((a, b) => a + b, 0)
  for (let i = 0; i < 4; i++) await abortMidUpload(before + i)
  const ewma = (): number => targets().find((x) => x.id === 'one-1')!.ewmaMs as number
  const ewmaBefore = ewma()
  // held 600 ms after the upstream started reading: a latency sample of these tries would lift one-1's EWMA to >= 600 ms
  for (let i = 0; i < 4; i++) await abortMidUpload(before + 4 + i, '/one', 600)
  t.ok(ewma() <= ewmaBefore, `one-1's latency EWMA took no sample from the cut uploads (${ewmaBefore} ms before, ${ewma()} ms after)`)
  // the upstream side of each cut upload is aborted too (poll: it learns it over its own socket)
  let aborted = 0
  for (let i = 0; i < 200; i++) {
    aborted = (await Promise.all(ups.map(async (u) => (await u.stats()).aborted))).reduce((a, b) => a + b, 0) - abortedBefore
    if (aborted >= 8) break
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  t.equal(aborted, 8, 'each upstream request was aborted')
  t.equal(await totalRequests() - before, 8, 'one upstream request per cut upload: no retry')
  for (const tg of targets()) {
    t.equal(tg.ejected, false, `${String(tg.id)} is not ejected`)
    t.equal(tg.circuit, 'closed', `${String(tg.id)}: circuit closed`)
  }
  const small = makeFile('3mb-after.bin', 3)
  const r = await curlUpload(small.path)
  t.equal(r.body?.bodySha256, small.sha256, 'the next upload still arrives whole')
})
