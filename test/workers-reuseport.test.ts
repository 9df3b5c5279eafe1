// node.workers on a runtime with SO_REUSEPORT (Node 22.12+ / 23.1+ on Linux): each worker binds the node's port
// itself and the kernel spreads connections; on older runtimes (Node 20) the primary hands them round robin.
// The runtime check (lib/workers/reuse-port.ts) is unit-tested on every runtime; the end-to-end part runs where
// the runtime has it (CI runs the suite on Node 22 and 24 too).
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { reusePortSupported, workerListenOptions } from '../lib/workers/reuse-port.js'
import { startUpstreams } from './helpers/upstream.js'
import { startCliNode } from './helpers/node.js'
import { freePort } from './helpers/redis.js'
import { until } from './helpers/poll.js'

t.test('the runtime check', async (t) => {
  for (const [v, p, want] of [
    ['20.20.2', 'linux', false], ['22.11.0', 'linux', false], ['22.12.0', 'linux', true], ['22.23.5', 'linux', true],
    ['23.0.0', 'linux', false], ['23.1.0', 'linux', true], ['24.22.3', 'linux', true], ['26.0.0', 'freebsd', true],
    ['24.22.3', 'darwin', false], ['24.22.3', 'win32', false],
  ] as const) t.equal(reusePortSupported(v, p), want, `Node ${v} on ${p}: ${want ? 'reusePort' : 'the primary'}`)
  t.same(workerListenOptions(8080, '24.0.0', 'linux'), { reusePort: true, exclusive: true })
  t.equal(workerListenOptions(0, '24.0.0', 'linux'), undefined, 'port 0: each worker would get a port of its own')
  t.equal(workerListenOptions(8080, '20.20.2', 'linux'), undefined)
})

t.test('two workers on one port, spread by the kernel', { skip: reusePortSupported() ? false : `Node ${process.versions.node} has no reusePort: the primary hands connections (test/workers.test.ts)` }, async (t) => {
  t.setTimeout(300_000)
  const ups = await startUpstreams(1, 'rp')
  const agent = new Agent({ connections: 32 })
  t.teardown(async () => { await agent.close(); await Promise.all(ups.map(async (u) => await u.kill())) })
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'fhg-reuseport-'))
  const file = join(dir, 'gw.yaml')
  const token = 'reuseport-admin-token'
  writeFileSync(file, `node: { id: gw-rp, host: 127.0.0.1, port: ${port}, workers: 2 }
upstreams:
  api: { targets: [{ id: a1, url: ${ups[0].url} }] }
routes:
  - { path: /api, upstream: api }
admin: { token: ${token} }
`)
  const node = await startCliNode(file, { id: 'gw-rp', timeout: 90_000 })
  t.teardown(async () => { await node.kill('SIGKILL') })
  await until(() => node.log.some((l) => l.includes('every worker listens')), 60_000, 'every worker listens')
  // each worker's line may come after the primary's (buffered log destinations)
  const lines = (): string[] => node.log.filter((l) => l.includes('"worker listens"'))
  await until(() => lines().length === 2, 10_000, 'both workers to say how they listen')
  t.equal(lines().length, 2, 'both workers say how they listen')
  for (const l of lines()) t.match(JSON.parse(l), { connections: 'kernel (SO_REUSEPORT)' })
  // new connections land on both workers (the kernel hashes each connection's addresses and ports)
  const pids = new Set<number>()
  await until(async () => {
    const r = await request(`http://127.0.0.1:${port}/gateway/status`, { dispatcher: agent, reset: true, headers: { authorization: `Bearer ${token}` } })
    const body = await r.body.json() as { node: { pid: number } }
    pids.add(body.node.pid)
    return pids.size === 2
  }, 30_000, 'status answers from both workers', 0)
  t.equal(pids.size, 2, 'both workers answer on the one port')
  let ok = 0
  for (let i = 0; i < 40; i++) {
    const r = await request(`http://127.0.0.1:${port}/api/x${i}`, { dispatcher: agent, reset: true })
    await r.body.dump()
    if (r.statusCode === 200) ok++
  }
  t.equal(ok, 40, 'every request proxied')
  await node.kill('SIGTERM')
  t.equal((await node.exit).code, 0, 'SIGTERM: every worker drains, exit 0')
})
