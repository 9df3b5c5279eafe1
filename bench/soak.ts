// Soak (issue 15; not CI): mixed traffic over 3 CLI nodes with rate limits, active probes, a config PUT every 10 s
// and a target restart every minute; RSS of each node and Redis memory sampled every 10 s. Prints the growth after
// the first minute, the answers by status (errors inside a restart window apart), and the Redis key count.
//   node --import tsx bench/soak.ts [--duration 600]   (seconds)
import { readFileSync } from 'node:fs'
import { Redis } from 'ioredis'
import { startRedis } from '../test/helpers/redis.js'
import { startUpstream, type UpstreamProcess } from '../test/helpers/upstream.js'
import { killAll, startCliNode, type CliNode } from '../test/helpers/node.js'
import { admin, byStatus, cliConfig, load, pct } from '../test/helpers/chaos.js'

const arg = process.argv.indexOf('--duration')
const DURATION = (arg === -1 ? 600 : Number(process.argv[arg + 1])) * 1000
const SAMPLE = 10_000
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))
const rssMiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024

const redis = await startRedis()
const r = new Redis(redis.port, '127.0.0.1')
let up: UpstreamProcess = await startUpstream({ id: 'soak-up' })
const upPort = up.port
const probes = '    healthCheck: { active: { type: http, path: /health, interval: 1s, timeout: 500ms } }'
const limit = '{ algorithm: sliding_window, limit: 50, window: 1s, key: \'header:x-client\' }'
const nodes: CliNode[] = await Promise.all(['soak-a', 'soak-b', 'soak-c'].map(async (id) =>
  await startCliNode(cliConfig({ id, cluster: 'soak', redis: redis.url, upstream: up.url, routeLimit: limit, upstreamExtra: probes }), { id, timeout: 180_000 })))
const cleanup = async (): Promise<void> => { await killAll(nodes); await up.kill(); r.disconnect(); await redis.stop() }

const restarts: Array<[number, number]> = []
const samples: Array<{ s: number, rss: number[], redisMiB: number, keys: number }> = []
const puts: Record<number, number> = {}
const t0 = Date.now()
const bg = load(() => nodes.map((n) => n.address), '/api/x', 6, undefined, () => ({ 'x-client': `c${Math.floor(Math.random() * 200)}` }))

for (let tick = 1; Date.now() - t0 < DURATION; tick++) {
  await sleep(t0 + tick * SAMPLE - Date.now())
  const s = Math.round((Date.now() - t0) / 1000)
  // a config PUT on the next node, with the version it reads
  const n = nodes[tick % 3]
  const cur = await admin(n.address, '/gateway/config')
  const doc = { ...cur.body.config, upstreams: { api: { ...cur.body.config.upstreams.api, targets: [{ id: `t-${tick}`, url: up.url, weight: 1 + (tick % 5) }] } } }
  const put = await admin(n.address, '/gateway/config', 'PUT', doc, { 'if-match': String(cur.body.version) })
  puts[put.status] = (puts[put.status] ?? 0) + 1
  if (tick % 6 === 0) {
    const from = Date.now()
    await up.kill()
    up = await startUpstream({ id: 'soak-up', port: upPort })
    restarts.push([from, Date.now() + 3000]) // probes and passive checks settle within a few seconds
  }
  const info = await r.info('memory')
  samples.push({ s, rss: nodes.map((x) => rssMiB(x.child.pid!)), redisMiB: Number(/used_memory:(\d+)/.exec(info)?.[1]) / 1048576, keys: await r.dbsize() })
  const last = samples[samples.length - 1]
  console.log(`${String(s).padStart(4)} s  rss ${last.rss.map((x) => x.toFixed(1)).join(' / ')} MiB  redis ${last.redisMiB.toFixed(2)} MiB  keys ${last.keys}  requests ${bg.hits.length}`)
}
const hits = await bg.stop()
const inRestart = (h: { at: number }): boolean => restarts.some(([a, b]) => h.at >= a && h.at <= b)
const base = samples.find((x) => x.s >= 60) ?? samples[0]
const end = samples[samples.length - 1]
const growth = (a: number, b: number): string => `${(((b - a) / a) * 100).toFixed(1)} %`
console.log(`\nsoak ${(DURATION / 1000).toFixed(0)} s: ${hits.length} requests, p50 ${pct(hits.map((h) => h.ms), 50).toFixed(1)} ms, p99 ${pct(hits.map((h) => h.ms), 99).toFixed(1)} ms`)
console.log(`answers outside restart windows: ${JSON.stringify(byStatus(hits.filter((h) => !inRestart(h))))}; inside the ${restarts.length} restart windows: ${JSON.stringify(byStatus(hits.filter(inRestart)))}`)
console.log(`config PUTs: ${JSON.stringify(puts)}`)
console.log(`growth from ${base.s} s to ${end.s} s: node RSS ${base.rss.map((x, i) => growth(x, end.rss[i])).join(' / ')}; Redis used_memory ${growth(base.redisMiB, end.redisMiB)}; keys ${base.keys} -> ${end.keys} (max ${Math.max(...samples.map((x) => x.keys))})`)
await cleanup()
process.exit(0)
