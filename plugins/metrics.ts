import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { Registry } from 'prom-client'
import { createRegistry } from '../lib/metrics/registry.js'

export interface MetricsOptions {
  /** Route that serves Prometheus text (default /metrics); `false` registers no route. */
  path?: string | false
  /** Bring your own Registry; by default the plugin makes one owned by this app (never the global one). */
  registry?: Registry
  /** Collect Node process metrics (default true). */
  defaultMetrics?: boolean
}

async function metricsPlugin (fastify: FastifyInstance, opts: MetricsOptions): Promise<void> {
  const registry = opts.registry ?? createRegistry({ defaultMetrics: opts.defaultMetrics })
  fastify.decorate('gatewayMetrics', { registry })
  const path = opts.path ?? '/metrics'
  if (path !== false) {
    fastify.get(path, { logLevel: 'warn' }, async (_request, reply) => {
      reply.type(registry.contentType)
      return await registry.metrics()
    })
  }
}

export default fp(metricsPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-metrics',
})
