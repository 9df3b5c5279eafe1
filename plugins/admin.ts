import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { makeTokenCheck } from '../lib/admin-auth.js'
import { ConfigConflictError } from '../lib/cluster/index.js'
import { ConfigError } from '../lib/config/index.js'
import { GatewayError } from '../lib/errors.js'
import type { SharedConfig } from '../types/index.js'

/** Largest config PUT body (bytes): room for ~100k routes; a larger one gets 413 before it is parsed. */
export const CONFIG_BODY_LIMIT = 16 * 1024 * 1024

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
    const refused = fastify.hasDecorator('cluster') ? fastify.cluster.config.refused : undefined
    return {
      node: { id: opts.nodeId ?? 'gateway', pid: process.pid, uptimeSeconds: Math.round(process.uptime()) },
      // the version this node applied and runs in full; a later one it could not apply is named apart
      configVersion: opts.configVersion?.() ?? (fastify.hasDecorator('cluster') ? fastify.cluster.config.version : 0),
      ...(refused === undefined ? {} : { configRefused: refused }),
      upstreams: withHealth(fastify),
    }
  })

  if (fastify.hasDecorator('cluster')) clusterRoutes(fastify, prefix, guard)
}

/** The cluster view and the shared config (GET, and PUT with If-Match: compare-and-set). */
function clusterRoutes (fastify: FastifyInstance, prefix: string, guard: (request: FastifyRequest, reply: FastifyReply) => Promise<void>): void {
  const cluster = fastify.cluster
  fastify.get(`${prefix}/cluster`, { onRequest: guard, logLevel: 'warn' }, async () => {
    const refused = cluster.config.refused
    return {
      self: cluster.nodeId,
      redis: cluster.redisEnabled ? (cluster.redisUp ? 'up' : 'down') : 'none',
      // nodes[].configVersion is what each node applied; this node's last refused version, if any
      ...(refused === undefined ? {} : { configRefused: refused }),
      nodes: cluster.nodes().map((n) => ({
        id: n.id,
        address: `${n.address}:${n.port}`,
        lastSeen: new Date(n.lastSeen).toISOString(),
        configVersion: n.configVersion,
        // the registry says ok; the admin view says what /ready would
        status: n.status === 'draining' ? 'draining' : 'ready',
        version: n.version,
        startedAt: new Date(n.startedAt).toISOString(),
      })),
    }
  })

  fastify.get(`${prefix}/config`, { onRequest: guard, logLevel: 'warn' }, async (_request, reply) => {
    const doc = await cluster.config.get()
    reply.header('etag', `"${doc.version}"`)
    return { version: doc.version, config: doc.config }
  })

  // its own scope: a JSON parser that keeps `__proto__` keys as plain data, so validation refuses them by path
  void fastify.register(async (scope) => {
    scope.removeContentTypeParser('application/json')
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: CONFIG_BODY_LIMIT }, (_request, body, done) => {
      try {
        done(null, JSON.parse(body as string))
      } catch (err) {
        // never the parser's message: V8 quotes the body, which may hold a secret
        const at = /position (\d+)/.exec((err as Error).message)?.[1]
        done(new GatewayError('INVALID_CONFIG', `the body is not valid JSON${at === undefined ? '' : ` (at byte ${at})`}`), undefined)
      }
    })
    scope.put(`${prefix}/config`, { onRequest: guard, bodyLimit: CONFIG_BODY_LIMIT }, putConfig)
  })

  async function putConfig (request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    const ifMatch = request.headers['if-match']
    if (ifMatch === undefined || ifMatch === '') {
      const err = new GatewayError('PRECONDITION_REQUIRED', 'GET the config, then PUT with If-Match: <version>')
      return await reply.code(428).send(err.toJSON())
    }
    const m = /^(?:W\/)?"?(\d+)"?$/.exec(ifMatch.trim())
    if (m === null) {
      const err = new GatewayError('PRECONDITION_REQUIRED', `If-Match must be a config version, got ${JSON.stringify(ifMatch)}`)
      return await reply.code(428).send(err.toJSON())
    }
    try {
      const { version } = await cluster.config.put(request.body as SharedConfig, Number(m[1]))
      reply.header('etag', `"${version}"`)
      return { version }
    } catch (err) {
      if (err instanceof ConfigError) {
        return await reply.code(400).send(err.toJSON())
      }
      if (err instanceof ConfigConflictError) {
        reply.header('etag', `"${err.currentVersion}"`)
        return await reply.code(409).send({ ...err.toJSON(), currentVersion: err.currentVersion })
      }
      if (err instanceof GatewayError) return await reply.code(err.statusCode).send(err.toJSON())
      throw err
    }
  }
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
