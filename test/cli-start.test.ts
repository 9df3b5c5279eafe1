// `fastify-ha-gateway start`: a real process booted from a YAML file, proxying to real upstreams,
// draining on SIGTERM. (`validate` and its error messages are covered by cli.test.ts.)
import t from 'tap'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { startUpstreams, type UpstreamProcess } from './helpers/upstream.js'
import { get, client } from './helpers/gateway.js'
import { startCliNode, type CliNode } from './helpers/node.js'
import { freePort } from './helpers/redis.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'fhg-cli-start-'))
const TOKEN = 'cli-start-admin-token'

let ups: UpstreamProcess[]
t.before(async () => { ups = await startUpstreams(2, 'c') })
t.teardown(async () => { await Promise.all(ups.map(async (u) => await u.kill())) })

function configFile (name: string): string {
  const p = join(dir, name)
  writeFileSync(p, `
node: { id: gw-from-file, port: 0 }
upstreams:
  api:
    strategy: round_robin
    targets:
      - { id: api-1, url: ${ups[0].url} }
      - { id: api-2, url: ${ups[1].url} }
routes:
  - { path: /api, upstream: api }
admin: { token: \${CLI_ADMIN_TOKEN} }
drain: { delay: 100ms, timeout: 10s }
`)
  return p
}

/** Spawn `start --config file` with the admin token in the environment; resolves once it listens. */
async function start (file: string, env: Record<string, string> = {}): Promise<CliNode> {
  return await startCliNode(file, { env: { CLI_ADMIN_TOKEN: TOKEN, ...env } })
}

t.test('start: boots from the file, proxies, and on SIGTERM finishes the request in flight and exits 0', async (t) => {
  const node = await start(configFile('start.yaml'))
  t.teardown(() => { if (node.child.exitCode === null) node.child.kill('SIGKILL') })
  t.match(node.address, /^http:\/\/127\.0\.0\.1:\d+$/, 'port 0: listens on a free port')

  const res = await get(`${node.address}/api/hello?x=1`)
  t.equal(res.status, 200, 'proxied through the CLI node')
  t.equal(res.body.url, '/api/hello?x=1')
  t.ok([ups[0].id, ups[1].id].includes(res.body.id), 'answered by a configured upstream')
  t.equal((await get(`${node.address}/health`)).status, 200)
  const st = await get(`${node.address}/gateway/status`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(st.status, 200, '${VAR} in the file gave the admin token')
  t.equal(st.body.node.id, 'gw-from-file')

  // A slow request on its own connection; SIGTERM once the gateway has it in flight.
  const slow = request(`${node.address}/api/slow/800`, { reset: true, dispatcher: client })
    .then(async (r) => ({ status: r.statusCode, body: await r.body.json() as { url: string } }))
  const deadline = Date.now() + 10_000
  let inFlight = 0
  while (inFlight === 0 && Date.now() < deadline) {
    const s = await get(`${node.address}/gateway/status`, { headers: { authorization: `Bearer ${TOKEN}` } })
    inFlight = (s.body.upstreams.api.targets as Array<{ inFlight: number }>).reduce((n, x) => n + x.inFlight, 0)
    if (inFlight === 0) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  t.equal(inFlight, 1, 'the slow request is in flight')
  node.child.kill('SIGTERM')

  const done = await slow
  t.equal(done.status, 200, 'the request in flight completes 200')
  t.equal(done.body.url, '/api/slow/800')
  const { code, signal } = await node.exit
  t.equal(signal, null, 'not killed by the signal')
  t.equal(code, 0, 'exits 0 after draining')
  t.ok(node.log.some((l) => l.includes('shutting down: draining')), 'logs the drain')
})

t.test('GATEWAY_PORT and GATEWAY_NODE_ID override the file', async (t) => {
  const port = await freePort()
  const node = await start(configFile('env.yaml'), { GATEWAY_PORT: String(port), GATEWAY_NODE_ID: 'gw-from-env' })
  t.teardown(async () => {
    if (node.child.exitCode === null) {
      node.child.kill('SIGTERM')
      await node.exit
    }
  })
  t.equal(node.address, `http://127.0.0.1:${port}`, 'listens on GATEWAY_PORT')
  const st = await get(`${node.address}/gateway/status`, { headers: { authorization: `Bearer ${TOKEN}` } })
  t.equal(st.status, 200)
  t.equal(st.body.node.id, 'gw-from-env', 'node id from GATEWAY_NODE_ID')
  t.equal((await get(`${node.address}/api/x`)).status, 200)
  node.child.kill('SIGINT')
  const { code } = await node.exit
  t.equal(code, 0, 'SIGINT drains and exits 0 too')
})

t.test('start with an invalid file exits 1 before listening and names the path', async (t) => {
  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, `upstreams:\n  api:\n    strategy: fastest\n    targets: [{ id: a, url: ${ups[0].url} }]\n`)
  const child = spawn(process.execPath, ['--import', 'tsx', 'bin/fastify-ha-gateway.ts', 'start', '--config', bad], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const [code] = await once(child, 'exit') as [number | null]
  t.equal(code, 1, 'exit 1')
  t.match(stderr, 'upstreams.api.strategy', 'stderr names the path')
  t.notMatch(stdout, 'Server listening', 'never listened')
})
