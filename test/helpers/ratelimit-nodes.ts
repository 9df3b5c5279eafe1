// Gateway nodes for the rate-limit tests: in-process Fastify apps, each with its own Redis connection.
import Fastify, { type FastifyInstance } from 'fastify'
import { Cluster } from 'ioredis'
import { Agent, request } from 'undici'
import metrics from '../../plugins/metrics.js'
import loadBalancer from '../../plugins/load-balancer.js'
import rateLimit, { type RateLimitPluginOptions, type RouteRateLimit } from '../../plugins/rate-limit.js'

export interface Node { app: FastifyInstance, url: string }

export interface NodesOptions {
  plugin: RateLimitPluginOptions
  rateLimit: RouteRateLimit
  /** Proxy to this upstream through the load balancer (default: a trivial route answering 'ok'). */
  upstream?: string
  /** Declare the route before registering the plugin on node `i` (checks lazy resolution). */
  routeFirst?: (i: number) => boolean
}

/** `n` nodes, each with route GET /r (or /api/* through the load balancer), listening on 127.0.0.1. */
export async function startNodes (n: number, o: NodesOptions): Promise<{ nodes: Node[], close: () => Promise<void> }> {
  const nodes: Node[] = []
  for (let i = 0; i < n; i++) {
    const app = Fastify({ logger: process.env.RL_TEST_LOG !== undefined ? { level: process.env.RL_TEST_LOG } : false })
    await app.register(metrics, { defaultMetrics: false })
    // server-side time to the answer (the limiter's wait included), apart from the test client's own stalls
    const started = new WeakMap<object, number>()
    app.addHook('onRequest', (req, _reply, done) => { started.set(req, performance.now()); done() })
    app.addHook('onSend', async (req, reply) => { reply.header('x-server-ms', (performance.now() - (started.get(req) ?? NaN)).toFixed(1)) })
    const addRoute = (): void => {
      if (o.upstream !== undefined) {
        for (const url of ['/api', '/api/*']) app.get(url, { config: { upstream: 'u', rateLimit: o.rateLimit } }, (_req, reply) => { reply.proxy() })
      } else {
        app.get('/r', { config: { rateLimit: o.rateLimit } }, async () => 'ok')
      }
    }
    if (o.upstream !== undefined) await app.register(loadBalancer, { upstreams: { u: { targets: [{ id: 'u1', url: o.upstream }] } } })
    const first = o.routeFirst?.(i) ?? false
    if (first) addRoute()
    await app.register(rateLimit, o.plugin)
    if (!first) addRoute()
    await app.listen({ host: '127.0.0.1', port: 0 })
    const addr = app.server.address()
    if (addr === null || typeof addr === 'string') throw new Error('no address')
    nodes.push({ app, url: `http://127.0.0.1:${addr.port}` })
  }
  return { nodes, close: async () => { await Promise.all(nodes.map(async (x) => await x.app.close())) } }
}

/**
 * Wait until every node's Redis client is ready (boot does not wait for it). A Redis Cluster client is ready once
 * it knows the slots, but opens the connection to each master on first use, and with the offline queue off a
 * command to a master not yet connected fails fast: wait for every master's connection too.
 */
export async function redisReady (nodes: Node[], timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs
  for (const n of nodes) {
    const c = n.app.gatewayRateLimit.redis
    if (c === undefined) continue
    const ready = (): boolean => c.status === 'ready' &&
      (!(c instanceof Cluster) || c.nodes('master').every((m) => m.status === 'ready'))
    while (!ready()) {
      if (Date.now() > until) throw new Error(`redis client not ready: ${c.status}`)
      if (c instanceof Cluster && c.status === 'ready') for (const m of c.nodes('master')) if (m.status === 'wait') m.connect().catch(() => {})
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
}

export const agent = new Agent({ connections: 128, keepAliveTimeout: 2000, pipelining: 1 })

export interface Answer { status: number, ms: number, headers: Record<string, string | string[] | undefined>, at: number }

export async function send (url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const t0 = performance.now()
  const res = await request(url, { dispatcher: agent, headers })
  await res.body.dump()
  return { status: res.statusCode, ms: performance.now() - t0, headers: res.headers, at: Date.now() }
}

/** `count` requests at once, spread round robin over the nodes. */
export async function burst (nodes: Node[], path: string, count: number, headers: Record<string, string> = {}): Promise<Answer[]> {
  return await Promise.all(Array.from({ length: count }, async (_, i) => await send(nodes[i % nodes.length].url + path, headers)))
}

export function tally (answers: Answer[]): Record<number, number> {
  const out: Record<number, number> = {}
  for (const a of answers) out[a.status] = (out[a.status] ?? 0) + 1
  return out
}

export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
