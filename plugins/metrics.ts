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
  server.get(path, { logLevel: 'warn', ...(onRequest === undefined ? {} : { onRequest }) }, async (_request, reply) => {
    reply.type(registry.contentType)
    return await registry.metrics()
  })
}

export default fp(metricsPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-metrics',
})
