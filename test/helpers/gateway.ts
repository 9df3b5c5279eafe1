import http from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import { request, Agent } from 'undici'
import loadBalancer, { passThroughBodies } from '../../plugins/load-balancer.js'
import metrics from '../../plugins/metrics.js'
import type { LoadBalancerOptions, ProxyOptions } from '../../types/index.js'
import { COMMON_METHODS } from '../../lib/routes/methods.js'

/** A client that keeps no connection between tests and never retries. */
export const client = new Agent({ keepAliveTimeout: 1000, connections: 256 })

/**
 * An in-process gateway with one catch-all route per entry of `routes`, listening on 127.0.0.1. `setup` runs on
 * the app before any plugin (an error handler, a hook).
 */
export async function startGateway (opts: LoadBalancerOptions, routes: Array<{ prefix: string } & ProxyOptions>, setup?: (app: FastifyInstance) => void): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify({ logger: false })
  setup?.(app)
  await app.register(metrics, { defaultMetrics: false })
  await app.register(loadBalancer, opts)
  await app.register(async (scope) => {
    passThroughBodies(scope)
    for (const r of routes) {
      const { prefix, ...config } = r
      for (const url of [prefix, `${prefix === '/' ? '' : prefix}/*`]) {
        scope.route({ method: [...COMMON_METHODS], url, exposeHeadRoute: false, config, handler: (_req, reply) => reply.proxy() })
      }
    }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const addr = app.server.address()
  if (addr === null || typeof addr === 'string') throw new Error('no address')
  return { app, url: `http://127.0.0.1:${addr.port}` }
}

export async function get (url: string, init: Parameters<typeof request>[1] = {}): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, body: any, text: string }> {
  const res = await request(url, { dispatcher: client, ...init })
  const text = await res.body.text()
  let body: unknown
  try { body = JSON.parse(text) } catch { body = undefined }
  return { status: res.statusCode, headers: res.headers, body, text }
}

/** A GET through node:http, which sends headers (e.g. a custom Connection) exactly as given. */
export async function rawGet (url: string, headers: Record<string, string>): Promise<{ status: number, body: any }> {
  return await new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }) })
    })
    req.on('error', reject)
  })
}
