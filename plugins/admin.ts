import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { optional } from './optional.js'
import { tokenFingerprint, tokenProblem } from '../lib/admin-auth.js'
import type { AuthThrottleOptions } from '../lib/auth-throttle.js'
import { ConfigConflictError } from '../lib/cluster/index.js'
import { diffSharedConfig } from '../lib/cluster/config-diff.js'
import { ConfigError, inputGuardIssues } from '../lib/config/index.js'
import { ERROR_BODY_SCHEMA, GatewayError } from '../lib/errors.js'
import type { SharedConfig } from '../types/index.js'
import { bearerGuard, type Guard } from './auth-guard.js'
import { ownListener } from './own-listener.js'

/** Largest config PUT body (bytes): room for ~100k routes; a larger one gets 413 before it is parsed. */
export const CONFIG_BODY_LIMIT = 16 * 1024 * 1024

export interface AdminOptions {
  /** Route prefix (default /gateway). */
  prefix?: string
  /** Bearer token (at least 16 characters); with none, no admin route is registered. */
  token?: string
  /** `host:port` of a listener of the admin routes alone; absent: the app's own listener. */
  listen?: string
  /** Failed authentications allowed per client IP before 429 (default 5 per second). */
  throttle?: AuthThrottleOptions
  /** This node's id, shown by the status route. */
  nodeId?: string
  /** Config version shown by the status route (the cluster plugin updates it). */
  configVersion?: () => number
  /** node.workers: more fields of the status route (the node's workers: pid, uptime, in flight). */
  statusExtra?: () => Promise<Record<string, unknown>>
}

/** What an admin write did, for its audit line (set by the route, logged once the answer is sent). */
type AuditDetail = Record<string, unknown>

/**
 * Admin routes behind `Authorization: Bearer <token>`, on the app's listener or on one of their own.
 * Every write (any method but GET/HEAD) that passed the token check logs one audit line once answered.
 */
async function adminPlugin (fastify: FastifyInstance, opts: AdminOptions): Promise<void> {
  const prefix = (opts.prefix ?? '/gateway').replace(/\/$/, '')
  const token = opts.token
  if (token === undefined || token === '') {
    fastify.log.info('admin routes disabled: no admin.token configured')
    return
  }
  const problem = tokenProblem(token)
  if (problem !== undefined) throw new ConfigError([{ path: 'admin.token', message: problem }])
  const server = opts.listen === undefined ? fastify : ownListener(fastify, opts.listen, 'admin.listen')

  const passed = new WeakSet<FastifyRequest>()
  const audits = new WeakMap<FastifyRequest, AuditDetail>()
  const guard = bearerGuard(token, { what: 'admin', throttle: opts.throttle, onPass: (request) => passed.add(request) })
  const who = tokenFingerprint(token)
  const auditLog = fastify.log.child({ component: 'audit' })
  const audit = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (!passed.has(request)) return // refused by the guard: logged there
    auditLog.info({ audit: true, clientIp: request.ip, tokenFingerprint: who, method: request.method, route: request.routeOptions.url, status: reply.statusCode, ...audits.get(request) }, 'admin write')
  }
  const writes: Array<(scope: FastifyInstance) => void> = []
  const admin: AdminRoutes = {
    get: (url, handler) => { server.get(prefix + url, { onRequest: guard, logLevel: 'warn' }, handler) },
    write: (method, url, handler) => {
      // errors are raised through Fastify; the schema keeps the fields a config error carries past Fastify's four
      writes.push((scope) => {
        scope.route({ method, url: prefix + url, onRequest: guard, onResponse: audit, bodyLimit: CONFIG_BODY_LIMIT, schema: { response: { '4xx': ERROR_BODY_SCHEMA } }, handler })
      })
    },
    audit: (request, detail) => { audits.set(request, { ...audits.get(request), ...detail }) },
  }

  admin.get('/status', async () => {
    const cluster = optional(fastify, 'cluster')
    const refused = cluster?.config.refused
    return {
      node: { id: opts.nodeId ?? 'gateway', pid: process.pid, uptimeSeconds: Math.round(process.uptime()) },
      // the version this node applied and runs in full; a later one it could not apply is named apart
      configVersion: opts.configVersion?.() ?? cluster?.config.version ?? 0,
      ...(refused === undefined ? {} : { configRefused: refused }),
      upstreams: withHealth(fastify),
      ...(opts.statusExtra === undefined ? {} : await opts.statusExtra()),
    }
  })

  if (optional(fastify, 'cluster') !== undefined) clusterRoutes(fastify, admin)
  // writes in their own scope: a JSON parser that keeps `__proto__` keys as plain data, so validation refuses them by path
  if (writes.length > 0) {
    void server.register(async (scope) => {
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
      for (const add of writes) add(scope)
    })
  }
}

type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>
/** Where admin routes go (the app or the admin listener), guarded; writes are audited. */
interface AdminRoutes {
  get (url: string, handler: Handler): void
  write (method: 'PUT' | 'POST' | 'PATCH' | 'DELETE', url: string, handler: Handler): void
  /** Add to the audit line of this write. */
  audit (request: FastifyRequest, detail: AuditDetail): void
}

/** The cluster view and the shared config (GET, and PUT with If-Match: compare-and-set). */
function clusterRoutes (fastify: FastifyInstance, admin: AdminRoutes): void {
  const cluster = fastify.cluster
  admin.get('/cluster', async () => {
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

  admin.get('/config', async (_request, reply) => {
    const doc = await cluster.config.get()
    reply.header('etag', `"${doc.version}"`)
    return { version: doc.version, config: doc.config }
  })

  admin.write('PUT', '/config', async (request, reply) => {
    const ifMatch = request.headers['if-match']
    if (ifMatch === undefined || ifMatch === '') {
      throw new GatewayError('PRECONDITION_REQUIRED', 'GET the config, then PUT with If-Match: <version>')
    }
    const m = /^(?:W\/)?"?(\d+)"?$/.exec(ifMatch.trim())
    if (m === null) {
      throw new GatewayError('PRECONDITION_REQUIRED', `If-Match must be a config version, got ${JSON.stringify(ifMatch)}`)
    }
    const from = Number(m[1])
    // the audit names what the write changes against the version it replaces (this node may lag it)
    let before = cluster.config.current()
    if (before.version !== from) before = await cluster.config.get().catch(() => before)
    // a body the input guard refuses (too deep, prototype keys) is not walked: validation names it by path
    const walkable = inputGuardIssues(request.body).length === 0
    admin.audit(request, { from: before.version, to: null, ...(walkable ? { changes: diffSharedConfig(before.config, request.body) } : {}) })
    try {
      const { version } = await cluster.config.put(request.body as SharedConfig, from)
      admin.audit(request, { to: version })
      reply.header('etag', `"${version}"`)
      return { version }
    } catch (err) {
      // raised through Fastify (ConfigError's issues and the conflict's currentVersion by the route's ERROR_BODY_SCHEMA)
      if (err instanceof ConfigConflictError) reply.header('etag', `"${err.currentVersion}"`)
      throw err
    }
  })
}

/** The load balancer's view of each target, with the health record (reason, since, lastError, ejections) merged in. */
function withHealth (fastify: FastifyInstance): ReturnType<FastifyInstance['loadBalancer']['status']> {
  const status = fastify.loadBalancer.status()
  const health = optional(fastify, 'gatewayHealth')
  if (health === undefined) return status
  const now = Date.now()
  for (const [name, upstream] of Object.entries(status)) {
    const snap = health.registry.snapshot(name, now)
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
