import os from 'node:os'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import { configInput, validateConfig, type GatewayConfig, type GatewayConfigInput } from '../lib/config/index.js'
import type { UpstreamSpec } from '../lib/upstream/registry.js'
import admin from './admin.js'
import cluster from './cluster.js'
import healthCheck from './health-check.js'
import loadBalancer, { passThroughBodies } from './load-balancer.js'
import metrics from './metrics.js'
import rateLimit from './rate-limit.js'

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const

export type GatewayOptions = GatewayConfigInput | { config: GatewayConfig }

/** The config as the load balancer takes it. */
export function toUpstreamSpecs (config: GatewayConfig): Record<string, UpstreamSpec> {
  const out: Record<string, UpstreamSpec> = {}
  for (const [name, u] of Object.entries(config.upstreams)) {
    out[name] = {
      strategy: u.strategy,
      hashOn: u.hashOn,
      targets: u.targets.map((t) => ({ id: t.id, url: t.url, weight: t.weight, metadata: t.metadata })),
      timeouts: u.timeouts,
    }
  }
  return out
}

/**
 * The umbrella: one config object (the YAML file's content, or the same object
 * in code) registers every plugin of the suite and the configured routes.
 * A bad config fails boot with a ConfigError naming each bad key's path.
 */
async function gatewayPlugin (fastify: FastifyInstance, opts: GatewayOptions): Promise<void> {
  const config = 'config' in opts && isNormalized(opts.config) ? opts.config : validateConfig(stripFastifyOpts(opts))

  if (config.metrics.enabled) await fastify.register(metrics, { path: config.metrics.path })
  await fastify.register(loadBalancer, {
    upstreams: toUpstreamSpecs(config),
    timeouts: config.proxy.timeouts,
    failover: Object.fromEntries(Object.entries(config.upstreams).map(([name, u]) => [name, u.failover])),
    circuitBreaker: Object.fromEntries(Object.entries(config.upstreams).flatMap(([name, u]) => u.circuitBreaker === undefined ? [] : [[name, u.circuitBreaker]])),
    agent: { keepAliveTimeout: config.proxy.keepAliveTimeout, connections: config.proxy.connections ?? null },
    notify: config.notifications.map((n) => n.type === 'webhook'
      ? { type: 'webhook' as const, url: n.url ?? '', timeout: n.timeout, maxQueue: n.maxQueue, headers: n.headers }
      : { type: 'log' as const }),
  })
  // after the load balancer (config sync reconciles it), before the rate limiter (it runs on gatewayRedis) and admin
  await fastify.register(cluster, { config, toUpstreamSpecs })
  // routes carry rateLimit.default already (normalize folds it in); the plugin's own default would also hit admin/health/metrics
  const { default: _default, ...rateLimitOptions } = config.rateLimit
  await fastify.register(rateLimit, { ...rateLimitOptions, clusterName: config.cluster.name })
  await fastify.register(healthCheck, { upstreams: config.upstreams, drain: config.drain })
  await fastify.register(admin, { prefix: config.admin.prefix, token: config.admin.token, nodeId: config.node.id })

  // Configured routes live in their own scope: bodies stream through unparsed.
  await fastify.register(async (scope) => {
    passThroughBodies(scope)
    // a strategy the route inherits is left to the upstream, so config sync can change it at runtime
    const rawRoutes = (configInput(config) as { routes?: Array<Record<string, unknown>> } | undefined)?.routes
    for (const [i, route] of config.routes.entries()) {
      const own = rawRoutes === undefined || rawRoutes[i]?.strategy !== undefined
      const base = route.path.replace(/\/+$/, '')
      const routeConfig = {
        upstream: route.upstream,
        strategy: own ? route.strategy : undefined,
        hashOn: own || rawRoutes[i]?.hashOn !== undefined ? route.hashOn : undefined,
        gatewayRoute: route.path,
        failover: route.failover,
        fallbackResponse: route.fallbackResponse,
        rateLimit: route.rateLimit,
      }
      for (const url of base === '' ? ['/', '/*'] : [base, `${base}/*`]) {
        scope.route({
          method: route.methods ?? [...ALL_METHODS],
          url,
          exposeHeadRoute: false,
          config: routeConfig,
          handler: proxyHandler,
        })
      }
    }
  })

  const unimplemented = notYetImplemented(config)
  if (unimplemented.length > 0) {
    fastify.log.warn({ keys: unimplemented }, `configured but not implemented in this version: ${unimplemented.join(', ')}`)
  }
}

function proxyHandler (this: FastifyInstance, _request: unknown, reply: import('fastify').FastifyReply): void {
  reply.proxy()
}

/** Options this version validates but does not act on yet: said out loud at boot, never silently ignored. */
export function notYetImplemented (config: GatewayConfig): string[] {
  const keys: string[] = []
  for (const [name, u] of Object.entries(config.upstreams)) {
    if (u.discovery !== undefined) keys.push(`upstreams.${name}.discovery`)
  }
  config.routes.forEach((r, i) => {
    if (r.cache !== undefined) keys.push(`routes[${i}].cache`)
  })
  return keys
}

const kNormalized = Symbol.for('fastify-ha-gateway.config.normalized')
function isNormalized (c: unknown): c is GatewayConfig {
  return typeof c === 'object' && c !== null && (c as Record<symbol, unknown>)[kNormalized] === true
}

// Fastify's register() options may carry its own keys; they are not gateway config.
function stripFastifyOpts (opts: GatewayOptions): unknown {
  const { prefix: _p, logLevel: _l, logSerializers: _s, ...rest } = opts as Record<string, unknown>
  return rest
}

export const gateway = fp(gatewayPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway',
})
export default gateway

export interface StartedNode {
  app: FastifyInstance
  address: string
  config: GatewayConfig
  /** Drain and close: not ready, wait drain.delay, finish in-flight requests (bounded by drain.timeout), close. */
  close (): Promise<void>
}

export interface StartNodeOptions {
  logger?: FastifyServerOptions['logger']
  /** Install SIGTERM/SIGINT handlers that drain and exit 0 (the CLI does). Default false. */
  handleSignals?: boolean
}

/** Boot one gateway node from a validated config and listen on node.host:node.port. */
export async function startNode (config: GatewayConfig, opts: StartNodeOptions = {}): Promise<StartedNode> {
  const app = Fastify({
    logger: opts.logger ?? false,
    // Close idle keep-alive sockets on close so the process can exit; busy ones finish their request.
    forceCloseConnections: 'idle',
    // We drain ourselves (not-ready, drain.delay, then close): a request read while the listener
    // closes is still served rather than answered 503.
    return503OnClosing: false,
  })
  await app.register(gateway, { config })
  const address = await app.listen({ host: config.node.host, port: config.node.port })
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= drainAndClose(app, config)
    await closing
  }
  if (opts.handleSignals === true) {
    const onSignal = (signal: NodeJS.Signals): void => {
      app.log.info({ signal }, 'shutting down: draining')
      close().then(() => process.exit(0), (err: unknown) => {
        app.log.error({ err }, 'error while shutting down')
        process.exit(1)
      })
    }
    process.once('SIGTERM', onSignal)
    process.once('SIGINT', onSignal)
  }
  return { app, address, config, close }
}

async function drainAndClose (app: FastifyInstance, config: GatewayConfig): Promise<void> {
  // 1-2. Turn not-ready and keep serving for drain.delay, so load balancers in front move away.
  // This must happen before app.close(): Fastify refuses new requests as soon as close() starts.
  app.gatewayHealth.startDrain()
  app.cluster.setStatus('draining')
  if (config.drain.delay > 0) await new Promise((resolve) => setTimeout(resolve, config.drain.delay))
  // 3-4. Stop accepting, finish requests in flight, close. The timer bounds the wait so a stuck
  // upstream cannot hold the exit.
  let timer: NodeJS.Timeout | undefined
  const bounded = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      app.log.warn({ timeoutMs: config.drain.timeout }, 'drain timeout: closing remaining connections')
      app.server.closeAllConnections()
      resolve()
    }, config.drain.timeout)
    timer.unref()
  })
  await Promise.race([app.close(), bounded])
  clearTimeout(timer)
}

export const defaultNodeId = (): string => `${os.hostname()}-${process.pid}`
