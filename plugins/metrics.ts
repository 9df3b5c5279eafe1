import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Registry } from 'prom-client'
import { tokenProblem } from '../lib/admin-auth.js'
import type { AuthThrottleOptions } from '../lib/auth-throttle.js'
import { ConfigError } from '../lib/config/index.js'
import { createRegistry } from '../lib/metrics/registry.js'
import { bearerGuard } from './auth-guard.js'
import { ownListener } from './own-listener.js'

export interface MetricsOptions {
  /** Route that serves Prometheus text (default /metrics); `false` registers no route. */
  path?: string | false
  /** Bring your own Registry; by default the plugin makes one owned by this app (never the global one). */
  registry?: Registry
  /** Collect Node process metrics (default true). */
  defaultMetrics?: boolean
  /** Bearer token the route asks for (at least 16 characters); absent: open. */
  token?: string
  /** `host:port` of a listener of the metrics route alone; absent: the app's own listener. */
  listen?: string
  /** Failed authentications allowed per client IP before 429 (default 5 per second). */
  throttle?: AuthThrottleOptions
  /** What a scrape answers instead of this registry alone (node.workers: every worker's metrics, merged). */
  scrape?: () => Promise<{ text: string, contentType: string }>
}

async function metricsPlugin (fastify: FastifyInstance, opts: MetricsOptions): Promise<void> {
  const registry = opts.registry ?? createRegistry({ defaultMetrics: opts.defaultMetrics })
  fastify.decorate('gatewayMetrics', { registry })
  const path = opts.path ?? '/metrics'
  if (path === false) return
  const token = opts.token
  const problem = token === undefined ? undefined : tokenProblem(token)
  if (problem !== undefined) throw new ConfigError([{ path: 'metrics.token', message: problem }])
  const server = opts.listen === undefined ? fastify : ownListener(fastify, opts.listen, 'metrics.listen')
  const onRequest = token === undefined ? undefined : bearerGuard(token, { what: 'metrics', throttle: opts.throttle })
  const scrape = opts.scrape
  server.get(path, { logLevel: 'warn', ...(onRequest === undefined ? {} : { onRequest }) }, async (_request, reply) => {
    if (scrape !== undefined) {
      const m = await scrape()
      reply.type(m.contentType)
      return m.text
    }
    reply.type(registry.contentType)
    return await registry.metrics()
  })
}

export default fp(metricsPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-metrics',
})
