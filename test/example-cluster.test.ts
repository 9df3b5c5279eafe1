// `npm run example:cluster`: Redis, the demo upstreams and three CLI nodes that see each other; SIGINT stops them all.
import t from 'tap'
import { spawn, execFileSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { freePort, freePorts } from './helpers/redis.js'
import { until } from './helpers/poll.js'

const root = fileURLToPath(new URL('..', import.meta.url))

t.setTimeout(900_000) // redis, five upstreams and three nodes compiled by tsx: minutes on a busy machine

/** Every descendant pid of `pid` (Linux: ps --ppid). */
function descendants (pid: number): number[] {
  let out = ''
  try { out = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' }) } catch { return [] }
  const kids = out.split('\n').map((s) => Number(s.trim())).filter((n) => n > 0)
  return kids.flatMap((k) => [k, ...descendants(k)])
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** Poll `fn` every 250 ms until it gives a value (a throw counts as none yet); that value. */
async function valueOf<T> (what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  let v: T | undefined
  await until(async () => {
    try { v = await fn() } catch { v = undefined }
    return v !== undefined
  }, ms, what, 250)
  return v as T
}

t.test('example:cluster: three nodes answer and see each other in {admin}/cluster; SIGINT stops every child', async (t) => {
  // the example config with free ports for the demo upstreams (3001... may be taken here)
  let yaml = readFileSync(join(root, 'example-app', 'gateway.yaml'), 'utf8')
  for (const port of new Set(yaml.match(/127\.0\.0\.1:30\d\d/g))) yaml = yaml.replaceAll(port, `127.0.0.1:${await freePort()}`)
  const dir = mkdtempSync(join(tmpdir(), 'fhg-example-cluster-'))
  const config = join(dir, 'gateway.yaml')
  writeFileSync(config, yaml)
  const base = await freePorts(3) // the nodes listen on base, base+1, base+2

  const script = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).scripts['example:cluster'] as string
  t.equal(script, 'node --import tsx example-app/cluster.ts', 'the npm script runs this file (its pid is the one we signal)')
  const child = spawn(process.execPath, ['--import', 'tsx', 'example-app/cluster.ts'], {
    cwd: root, env: { ...process.env, GATEWAY_CONFIG: config, CLUSTER_BASE_PORT: String(base), REDIS_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })

  try {
    await valueOf('the "cluster up" banner', 400_000, async () => out.includes('Ctrl-C stops everything') ? true : (child.exitCode !== null ? false : undefined))
  } catch (err) {
    throw new Error(`${(err as Error).message}; its output:\n${out.slice(-3000)}`)
  }
  t.equal(child.exitCode, null, 'it runs', { output: out.slice(-3000) })
  const urls = [0, 1, 2].map((i) => `http://127.0.0.1:${base + i}`)
  for (const u of urls) t.match(out, u, `the banner prints ${u}`)
  t.match(out, /metrics: .*\/metrics/)
  t.match(out, /dashboard: http:\/\/127\.0\.0\.1:\d+\/gateway\/dashboard/, 'the banner prints the dashboard')
  t.match(out, /redis on redis:\/\/127\.0\.0\.1:\d+/)

  for (const u of urls) {
    const view = await valueOf(`${u} to list three ready nodes`, 60_000, async () => {
      const r = await fetch(`${u}/gateway/cluster`, { headers: { authorization: 'Bearer demo-admin-token-change-me' } })
      const body = await r.json() as { redis: string, nodes: Array<{ id: string, status: string }> }
      return body.nodes.filter((n) => n.status === 'ready').length === 3 ? body : undefined
    })
    t.equal(view.redis, 'up')
    t.same(view.nodes.map((n) => n.id).sort(), ['node-1', 'node-2', 'node-3'], `${u} sees the three nodes`)
    // health checks mark the demo targets healthy within a few probes
    const proxied = await valueOf(`${u} to proxy /users/7`, 60_000, async () => {
      const r = await fetch(`${u}/users/7`)
      return r.status === 200 ? await r.json() : undefined
    })
    t.match(proxied, { id: /^users-/ }, `${u} proxies to the demo upstreams`)
  }

  const dash = /dashboard: (\S+)/.exec(out)![1]
  const page = await fetch(dash)
  t.equal(page.status, 200, 'the printed dashboard URL serves the page')
  t.match(page.headers.get('content-type'), /text\/html/)
  const kids = descendants(child.pid!)
  t.ok(kids.length >= 1 + 5 + 3, `redis, 5 demo upstreams and 3 nodes run under it (${kids.length} processes)`)
  const exited = once(child, 'exit')
  child.kill('SIGINT')
  const [code] = await exited
  t.equal(code, 0, 'Ctrl-C: exit 0')
  await valueOf('every child to be gone', 30_000, async () => kids.every((p) => !alive(p)) ? true : undefined)
  t.same(kids.filter(alive), [], 'no process left behind')
  t.match(out, 'stopped')
})
