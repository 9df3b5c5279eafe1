import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'

export interface HealthCheckPluginOptions {
  /** Per upstream: `healthCheck.required` (default true) says whether /ready waits for it. */
  upstreams?: Record<string, { healthCheck?: { required?: boolean } }>
  drain?: { delay?: number }
  /** Paths of the liveness and readiness routes. */
  healthPath?: string
  readyPath?: string
}

export interface GatewayHealth {
  readonly draining: boolean
  /** Turn not-ready now (the first step of a drain). */
  startDrain (): void
  /** Readiness verdict and why. */
  readiness (): { ready: boolean, draining: boolean, upstreams: Record<string, { required: boolean, eligible: number, total: number }> }
}

declare module 'fastify' {
  interface FastifyInstance {
    gatewayHealth: GatewayHealth
  }
}

async function healthCheckPlugin (fastify: FastifyInstance, opts: HealthCheckPluginOptions): Promise<void> {
  const lb = fastify.loadBalancer
  let draining = false
  const required = (name: string): boolean => opts.upstreams?.[name]?.healthCheck?.required ?? true

  const health: GatewayHealth = {
    get draining () { return draining },
    startDrain () { draining = true },
    readiness () {
      const now = Date.now()
      const upstreams: Record<string, { required: boolean, eligible: number, total: number }> = {}
      let ready = !draining
      for (const e of lb.upstreams) {
        let eligible = 0
        for (const t of e.pool.targets) if (t.isEligible(now)) eligible++
        const req = required(e.name)
        upstreams[e.name] = { required: req, eligible, total: e.pool.size }
        if (req && eligible === 0) ready = false
      }
      return { ready, draining, upstreams }
    },
  }
  fastify.decorate('gatewayHealth', health)

  // Liveness: the process serves. HEAD is answered too (exposeHeadRoute).
  fastify.get(opts.healthPath ?? '/health', { logLevel: 'warn' }, async () => ({ status: 'ok' }))
  fastify.get(opts.readyPath ?? '/ready', { logLevel: 'warn' }, async (_request, reply) => {
    const r = health.readiness()
    reply.code(r.ready ? 200 : 503)
    return { status: r.ready ? 'ready' : 'not_ready', ...r }
  })

  // Drain, step 1 and 2: turn not-ready, then give the load balancers in front drain.delay to notice.
  // Fastify then stops accepting and waits for requests in flight (step 3) before onClose (step 4).
  fastify.addHook('preClose', async () => {
    health.startDrain()
    const delay = opts.drain?.delay ?? 0
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
  })
}

export default fp(healthCheckPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-health-check',
  dependencies: ['fastify-ha-gateway-load-balancer'],
  decorators: { fastify: ['loadBalancer'] },
})
