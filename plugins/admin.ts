import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { makeTokenCheck } from '../lib/admin-auth.js'
import { GatewayError } from '../lib/errors.js'

export interface AdminOptions {
  /** Route prefix (default /gateway). */
  prefix?: string
  /** Bearer token; with none, no admin route is registered. */
  token?: string
  /** This node's id, shown by the status route. */
  nodeId?: string
  /** Config version shown by the status route (the cluster plugin updates it). */
  configVersion?: () => number
}

/**
 * Admin routes behind `Authorization: Bearer <token>`. Other plugins add their
 * own admin routes through `fastify.gatewayAdmin.route()`.
 */
async function adminPlugin (fastify: FastifyInstance, opts: AdminOptions): Promise<void> {
  const prefix = (opts.prefix ?? '/gateway').replace(/\/$/, '')
  const token = opts.token
  if (token === undefined || token === '') {
    fastify.log.info('admin routes disabled: no admin.token configured')
    return
  }
  const check = makeTokenCheck(token)
  const guard = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!check(request.headers.authorization)) {
      const err = new GatewayError('UNAUTHORIZED')
      reply.code(401).header('www-authenticate', 'Bearer').send(err.toJSON())
      return reply
    }
  }

  fastify.get(`${prefix}/status`, { onRequest: guard, logLevel: 'warn' }, async () => {
    return {
      node: { id: opts.nodeId ?? 'gateway', pid: process.pid, uptimeSeconds: Math.round(process.uptime()) },
      configVersion: opts.configVersion?.() ?? 0,
      upstreams: withHealth(fastify),
    }
  })
}

/** The load balancer's view of each target, with the health record (reason, since, lastError, ejections) merged in. */
function withHealth (fastify: FastifyInstance): ReturnType<FastifyInstance['loadBalancer']['status']> {
  const status = fastify.loadBalancer.status()
  if (!fastify.hasDecorator('gatewayHealth')) return status
  const now = Date.now()
  for (const [name, upstream] of Object.entries(status)) {
    const snap = fastify.gatewayHealth.registry.snapshot(name, now)
    if (snap === undefined) continue
    const byId = new Map(snap.map((s) => [s.id, s]))
    upstream.targets = upstream.targets.map((t) => {
      const h = byId.get(t.id as string)
      if (h === undefined) return t
      const { id: _id, url: _url, status: _status, ...detail } = h
      return { ...t, ...detail, since: new Date(h.since).toISOString() }
    })
  }
  return status
}

export default fp(adminPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-admin',
  dependencies: ['fastify-ha-gateway-load-balancer'],
  decorators: { fastify: ['loadBalancer'] },
})
