// Shared pieces of the chaos suite (test/chaos/): CPU hogs, CLI node configs, a load that records every answer,
// and percentiles. Processes come from the other helpers (redis.ts, sentinel.ts, node.ts, upstream.ts).
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'

/** `n` processes spinning forever beside the gateway; stop() kills them. */
export function busyLoops (n: number): { stop: () => Promise<void> } {
  const children: ChildProcess[] = []
  for (let i = 0; i < n; i++) {
    children.push(spawn(process.execPath, ['-e', 'let x = 0; for (;;) { x = (x + Math.random()) % 1e9 }'], { stdio: 'ignore' }))
  }
  const exit = (): void => { for (const c of children) c.kill('SIGKILL') }
  process.once('exit', exit)
  return {
    async stop () {
      process.off('exit', exit)
      await Promise.all(children.map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return
        const done = once(c, 'exit')
        c.kill('SIGKILL')
        await done
      }))
    },
  }
}

export const TOKEN = 'chaos-admin-token'
export const AUTH = { authorization: `Bearer ${TOKEN}` }

export interface CliConfig {
  id: string
  cluster: string
  /** YAML of cluster.redis (a URL, or a flow mapping). */
  redis: string
  upstream: string
  heartbeat?: number
  /** YAML of rateLimit (gateway-wide), e.g. `{ onStoreError: local }`. */
  rateLimit?: string
  /** YAML flow mapping of the /api route's rateLimit. */
  routeLimit?: string
  /** Extra YAML lines of upstreams.api (e.g. `failover: {...}`), indented by the caller. */
  upstreamExtra?: string
}

const dir = mkdtempSync(join(tmpdir(), 'fhg-chaos-'))

/** A CLI node's config file: one upstream `api`, route /api (with its limit), admin token, cluster on `redis`. */
export function cliConfig (c: CliConfig): string {
  const p = join(dir, `${c.id}.yaml`)
  writeFileSync(p, `
node: { id: ${c.id}, port: 0 }
cluster: { name: ${c.cluster}, redis: ${c.redis}, heartbeatInterval: ${c.heartbeat ?? 500}ms, snapshotPath: ${join(dir, `${c.id}.snapshot.json`)} }
upstreams:
  api:
    targets:
      - { id: t1, url: ${c.upstream} }
${c.upstreamExtra ?? ''}
routes:
  - { path: /api, upstream: api${c.routeLimit === undefined ? '' : `, rateLimit: ${c.routeLimit}`} }
${c.rateLimit === undefined ? '' : `rateLimit: ${c.rateLimit}`}
admin: { token: ${TOKEN} }
`)
  return p
}

export const agent = new Agent({ connections: 64, keepAliveTimeout: 2000, pipelining: 1 })

/** One answer of load(): `serverMs`, the node's own time to answer (its x-server-ms header, when it sets one). */
export interface Hit { node: number, status: number, ms: number, at: number, error?: string, serverMs?: number }

/**
 * `workers` loops sending GET `path` back to back, each to the node `pick(i)` names (an index into `urls()`),
 * until stopped. Connection errors are recorded as status 0.
 */
export function load (urls: () => string[], path: string, workers: number, pick?: (i: number, n: number) => number,
  headers: () => Record<string, string> = () => ({})): { hits: Hit[], stop: () => Promise<Hit[]> } {
  const hits: Hit[] = []
  let running = true
  let seq = 0
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const list = urls()
      const i = seq++
      const node = pick === undefined ? i % list.length : pick(i, list.length)
      const t0 = performance.now()
      try {
        const res = await request(list[node] + path, { dispatcher: agent, headers: headers(), headersTimeout: 15_000, bodyTimeout: 15_000 })
        await res.body.dump()
        const server = res.headers['x-server-ms']
        hits.push({ node, status: res.statusCode, ms: performance.now() - t0, at: Date.now(), ...(server === undefined ? {} : { serverMs: Number(server) }) })
      } catch (err) {
        hits.push({ node, status: 0, ms: performance.now() - t0, at: Date.now(), error: (err as Error).message })
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
  })
  return { hits, stop: async () => { running = false; await Promise.all(loops); return hits } }
}

/** The p-th percentile (0-100) of `values` (nearest rank); NaN when empty. */
export function pct (values: number[], p: number): number {
  if (values.length === 0) return NaN
  const s = [...values].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]
}

export function byStatus (hits: Hit[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const h of hits) out[h.status] = (out[h.status] ?? 0) + 1
  return out
}

/** GET/PUT against a node's admin API (JSON). */
export async function admin (base: string, path: string, method = 'GET', body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: any, headers: Record<string, string | string[] | undefined> }> {
  const res = await request(base + path, {
    method, dispatcher: agent, headers: { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body), headersTimeout: 5000, bodyTimeout: 5000,
  })
  const text = await res.body.text()
  let parsed: unknown
  try { parsed = JSON.parse(text) } catch { parsed = text }
  return { status: res.statusCode, body: parsed, headers: res.headers }
}

/** Node ids in `base`'s cluster view. */
export async function clusterView (base: string): Promise<string[]> {
  const r = await admin(base, '/gateway/cluster')
  return r.status === 200 ? (r.body.nodes as Array<{ id: string }>).map((n) => n.id).sort() : []
}
