// `npm run example:cluster`: a local cluster in one command. A redis-server on a free port (or REDIS_URL),
// the demo upstreams of gateway.yaml, and three gateway nodes (the CLI, `start --config gateway.yaml`)
// sharing it. Prints the URLs; Ctrl-C (SIGINT) or SIGTERM stops everything.
// Env: GATEWAY_CONFIG (default example-app/gateway.yaml), CLUSTER_BASE_PORT (nodes on it, +1, +2; default 8081),
// REDIS_URL (use that Redis instead of starting one), GATEWAY_ADMIN_TOKEN (default demo-admin-token-change-me).
import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createConnection, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { loadConfigFile } from '../lib/config/index.js'
import { here, spawnChild, startDemoUpstreams, stopAll } from './children.js'

const configFile = process.env.GATEWAY_CONFIG ?? here('./gateway.yaml')
const config = loadConfigFile(configFile)
const basePort = Number(process.env.CLUSTER_BASE_PORT ?? 8081)
const token = process.env.GATEWAY_ADMIN_TOKEN ?? 'demo-admin-token-change-me'
const NODES = 3

let stopping = false
let up = false
async function stop (code: number): Promise<never> {
  if (!stopping) {
    stopping = true
    console.log('stopping the cluster...')
    await stopAll()
    if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true })
    console.log('stopped')
  }
  process.exit(code)
}
process.once('SIGINT', () => { void stop(0) })
process.once('SIGTERM', () => { void stop(0) })

async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  return port
}

/** Polls `url` until it answers (any status) or `ms` pass. */
async function answers (url: string, ms: number, headers: Record<string, string> = {}): Promise<Response> {
  const end = Date.now() + ms
  for (;;) {
    try {
      return await fetch(url, { headers, signal: AbortSignal.timeout(2000) })
    } catch (err) {
      if (Date.now() > end) throw new Error(`${url} did not answer in ${ms / 1000} s: ${(err as Error).message}`)
      await sleep(200)
    }
  }
}

let dataDir: string | undefined
async function startRedis (): Promise<string> {
  if (process.env.REDIS_URL !== undefined && process.env.REDIS_URL !== '') return process.env.REDIS_URL
  if (spawnSync('redis-server', ['--version']).error !== undefined) {
    console.error(`redis-server is not on PATH. Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),
or point at a Redis you have: REDIS_URL=redis://127.0.0.1:6379 npm run example:cluster`)
    process.exit(1)
  }
  const port = await freePort()
  dataDir = mkdtempSync(join(tmpdir(), 'fhg-example-redis-'))
  const child = spawnChild('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dataDir], { stdio: 'ignore' })
  child.once('exit', (code) => { if (!stopping) { console.error(`redis-server exited (${code})`); void stop(1) } })
  const url = `redis://127.0.0.1:${port}`
  const end = Date.now() + 20_000
  for (;;) { // PING over a raw socket: no client library needed here
    const ok = await new Promise<boolean>((resolve) => {
      const s = createConnection(port)
      s.once('data', (d) => { s.destroy(); resolve(d.toString().startsWith('+PONG')) })
      s.once('error', () => resolve(false))
      s.write('PING\r\n')
    })
    if (ok) return url
    if (Date.now() > end) throw new Error(`redis-server on ${url} did not answer`)
    await sleep(100)
  }
}
try {
  const redis = await startRedis()
  console.log(`redis on ${redis}`)
  await startDemoUpstreams(config)
  const bin = here('../bin/fastify-ha-gateway.ts')
  const nodes = Array.from({ length: NODES }, (_, i) => ({ id: `node-${i + 1}`, port: basePort + i }))
  for (const n of nodes) {
    const child = spawnChild(process.execPath, ['--import', 'tsx', bin, 'start', '--config', configFile], {
      env: { ...process.env, GATEWAY_PORT: String(n.port), GATEWAY_NODE_ID: n.id, REDIS_URL: redis, GATEWAY_ADMIN_TOKEN: token, LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    child.once('exit', (code) => {
      if (stopping) return
      // before the cluster is up a node that exits failed to boot (its error is above): stop, do not wait for it
      if (!up) { console.error(`${n.id} exited (${code}) before it served`); void stop(1); return }
      console.error(`${n.id} exited (${code}); the others go on`)
    })
  }
  const host = config.node.host === '0.0.0.0' ? '127.0.0.1' : config.node.host
  const urls = nodes.map((n) => `http://${host}:${n.port}`)
  await Promise.all(urls.map(async (u) => await answers(`${u}/health`, 300_000))) // tsx compiles each node: slow on a busy machine
  up = true
  const admin = `${config.admin.prefix}`
  console.log(`
cluster up: ${NODES} nodes sharing ${redis}
${nodes.map((n, i) => `  ${n.id}: ${urls[i]}`).join('\n')}
  admin:   curl -s ${urls[0]}${admin}/cluster -H 'authorization: Bearer ${token}'
           curl -s ${urls[0]}${admin}/status -H 'authorization: Bearer ${token}'
           curl -s ${urls[0]}${admin}/config -H 'authorization: Bearer ${token}'
  dashboard: ${urls[0]}${admin}/dashboard   (it asks for the admin token above)
  metrics: ${urls.map((u) => `${u}${config.metrics.path}`).join('  ')}
  try:     curl -s ${urls[1]}/users/42
Ctrl-C stops everything.`)
} catch (err) {
  console.error(`example cluster: ${(err as Error).message}`)
  await stop(1)
}
