import { readFileSync } from 'node:fs'
import type tls from 'node:tls'
import os from 'node:os'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import fp from 'fastify-plugin'
import { isNormalizedConfig, redactError, validateConfig, type GatewayConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { applyServerLimits, armBodyIdle } from '../lib/client-limits.js'
import { fileRouteTable, fileRouteTableAsync } from '../lib/routes/file-routes.js'
import { kMatchedRoute, NO_ROUTE, routeConfigOf, tableRouteConfig } from '../lib/routes/route-config.js'
import { RouteTableRef } from '../lib/routes/route-table.js'
import { onUpgrade } from './upgrade.js'
import { toFailoverSpecs, toUpstreamSpecs } from '../lib/upstream/specs.js'
import admin from './admin.js'
import cluster from './cluster.js'
import clusterHealth from './cluster-health.js'
import discovery from './discovery.js'
import healthCheck from './health-check.js'
import loadBalancer, { passThroughBodies } from './load-balancer.js'
import metrics from './metrics.js'
import monitor from './monitor.js'
import { addAccessLog, GatewayLogController, nodeLog, type NodeLog } from './node-log.js'
import rateLimit from './rate-limit.js'
import responseCache from './response-cache.js'
import { PROXIED_METHODS } from '../lib/routes/methods.js'
import workers from './workers.js'
import { IpcStore, createWorkerStores } from '../lib/workers/ipc-store.js'
import { IpcConfigStore } from '../lib/workers/ipc-config.js'
import type { SharedConfig } from '../lib/cluster/shared-config.js'
import { WorkerProbes } from '../lib/workers/probes.js'
import { workerMonitorScope } from '../lib/workers/monitor-scope.js'
import type { WorkersStatus } from '../lib/workers/protocol.js'
import type { WorkerLink } from '../lib/workers/worker-link.js'
import { workerListenOptions } from '../lib/workers/reuse-port.js'

export type GatewayOptions = GatewayConfigInput | {
  config: GatewayConfig
  /** This process is one worker of a `node.workers` node (the CLI sets it; lib/workers/). */
  worker?: WorkerLink
}

export { toUpstreamSpecs, toFailoverSpecs }

/**
 * The umbrella: one config object (the YAML file's content, or the same object
 * in code) registers every plugin of the suite and the configured routes.
 * A bad config fails boot with a ConfigError naming each bad key's path.
 */
async function gatewayPlugin (fastify: FastifyInstance, opts: GatewayOptions): Promise<void> {
  const config = 'config' in opts && isNormalizedConfig(opts.config) ? opts.config : validateConfig(stripFastifyOpts(opts))
  const worker = 'config' in opts && 'worker' in opts ? opts.worker : undefined

  // node.timeouts and node.maxConnections: slow and greedy clients are cut by the server itself
  const limits = { ...config.node.timeouts, maxConnections: config.node.maxConnections }
  applyServerLimits(fastify.server, limits)
  if (limits.body > 0) {
    const bodyMs = limits.body
    fastify.addHook('onRequest', (request, _reply, done) => { armBodyIdle(request.raw, bodyMs); done() })
  }

  if (config.metrics.enabled) {
    // node.workers: one scrape answers for the whole node (the primary merges every worker's registry)
    const scrape = worker === undefined ? undefined : async () => await worker.gather('metrics') as { text: string, contentType: string }
    await fastify.register(metrics, { path: config.metrics.path, token: config.metrics.token, listen: config.metrics.listen, scrape })
  }
  // The registration order of the suite, in one place:
  // cluster first (the others subscribe to its config watch when they register: the load balancer's upstreams switch
  // before the route table below, every other watcher after), then the load balancer (its bad-path check is the first
  // onRequest hook, ahead of the rate limiter and the cache), the rate limiter (on gatewayRedis), health checks, ...
  // node.workers without Redis: the primary holds the node's config document and judges every PUT
  await fastify.register(cluster, { config, ...(worker === undefined ? {} : { configStore: (onError) => new IpcConfigStore<SharedConfig>(worker, { onError }) }) })
  await fastify.register(loadBalancer, {
    upstreams: toUpstreamSpecs(config),
    timeouts: config.proxy.timeouts,
    trustProxy: config.node.trustProxy,
    websocketIdle: config.proxy.timeouts.websocketIdle,
    drainTimeout: config.drain.timeout,
    ...toFailoverSpecs(config),
    agent: { keepAliveTimeout: config.proxy.keepAliveTimeout, connections: config.proxy.connections ?? null, maxHeaderSize: config.proxy.maxHeaderSize },
    notify: config.notifications.map((n) => n.type === 'webhook'
      ? { type: 'webhook' as const, url: n.url ?? '', timeout: n.timeout, maxQueue: n.maxQueue, headers: n.headers }
      : { type: 'log' as const }),
  })
  // the configured routes' table: swapped right after each applied config's upstreams, before other watchers run
  const routes = new RouteTableRef(fileRouteTable(config))
  if (!fastify.hasRequestDecorator(kMatchedRoute)) fastify.decorateRequest(kMatchedRoute, null)
  fastify.cluster.config.watch(async (next) => { routes.swap(await fileRouteTableAsync(next, routes.current)) })
  // routes carry rateLimit.default already (normalize folds it in); the plugin's own default would also hit admin/health/metrics
  const { default: _default, ...rateLimitOptions } = config.rateLimit
  // rateLimit.trustProxy, when set, wins for the limiter's client IP; else node.trustProxy
  // node.workers without Redis: the primary holds the counters, so limits stay exact across workers
  const ipc = worker !== undefined && !fastify.cluster.redisEnabled ? createWorkerStores(worker.channel) : undefined
  if (ipc !== undefined) fastify.addHook('onClose', async () => { await ipc.close() })
  // node.workers with Redis: onStoreError local falls back on the primary's counters, so the node admits its share once
  const fallback = worker !== undefined && ipc === undefined && config.rateLimit.onStoreError === 'local' ? new IpcStore(worker.channel, { local: true }) : undefined
  if (fallback !== undefined) fastify.addHook('onClose', async () => { await fallback.close() })
  await fastify.register(rateLimit, {
    ...rateLimitOptions,
    trustProxy: rateLimitOptions.trustProxy ?? config.node.trustProxy,
    clusterName: config.cluster.name,
    ...(ipc === undefined ? {} : { store: ipc.exact, leaseStore: ipc.lease }),
    ...(fallback === undefined ? {} : { localStore: fallback }),
  })
  // node.workers: active probes once per node (one worker probes and shares)
  await fastify.register(healthCheck, { upstreams: config.upstreams, drain: config.drain, probeCoordinator: worker === undefined ? undefined : new WorkerProbes(worker) })
  await fastify.register(clusterHealth) // hints between nodes' health checks; healthCheck options applied at run time
  await fastify.register(discovery, { upstreams: config.upstreams, interval: config.cluster.heartbeatInterval })
  await fastify.register(admin, {
    prefix: config.admin.prefix, token: config.admin.token, listen: config.admin.listen, nodeId: config.node.id,
    statusExtra: worker === undefined ? undefined : async () => {
      const s = await worker.gather('status') as WorkersStatus
      return { workers: s.workers, workersReplaced: s.replaced }
    },
  })
  // cluster metrics in the heartbeat, alerts (one evaluator per cluster), the dashboard
  await fastify.register(monitor, {
    prefix: config.admin.prefix, token: config.admin.token, listen: config.admin.listen, alerts: config.alerts,
    clusterName: config.cluster.name, sampleInterval: config.cluster.heartbeatInterval,
    // node.workers: one worker evaluates the alert rules, on the node's figures
    ...(worker === undefined ? {} : { node: workerMonitorScope(worker) }),
  })
  await fastify.register(responseCache, { redisMaxBytes: config.cache.maxBytes }) // routes[].cache: after the cluster (its two-level cache) and the limiter (hits count)
  if (worker !== undefined) await fastify.register(workers, { link: worker })
  // Fastify does not route upgrades: the configured routes take them here (lib/proxy/upgrade.ts)
  onUpgrade(fastify, routes)

  // Configured routes: one table behind a catch-all in its own scope (bodies stream through unparsed).
  // Routes declared in code win over it (a static or parametric route beats `/*`); config sync swaps the table.
  const known = new Set(fastify.supportedMethods)
  // every method Node's HTTP parser reads (PROPFIND, PURGE, ...); CONNECT never reaches a route
  for (const m of PROXIED_METHODS) if (!known.has(m)) fastify.addHttpMethod(m, { hasBody: true })
  await fastify.register(async (scope) => {
    passThroughBodies(scope)
    // `/*` also matches `/`; a route of its own for `/` would clash with an app's `GET /`
    scope.route({ method: [...PROXIED_METHODS], url: '/*', exposeHeadRoute: false, config: tableRouteConfig(routes), handler: tableHandler })
  })
}

function tableHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply): void {
  // no route of the table: the same 404 as an unknown route (the app's not-found handler)
  if (routeConfigOf(request) === NO_ROUTE) reply.callNotFound()
  else reply.proxy()
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
  /**
   * true: the config's `log` (level, access lines, destination: what the CLI runs); false (default): no log;
   * an object: Fastify's logger options (Fastify's own request logging, no access lines).
   */
  logger?: FastifyServerOptions['logger']
  /** Install SIGTERM/SIGINT handlers that drain and exit 0 (the CLI does). Default false. */
  handleSignals?: boolean
  /** This process is one worker of a `node.workers` node (the CLI sets it). */
  worker?: WorkerLink
}

/** Boot one gateway node from a validated config and listen on node.host:node.port. */
export async function startNode (config: GatewayConfig, opts: StartNodeOptions = {}): Promise<StartedNode> {
  const nodeTls = config.node.tls
  const log = opts.logger === true ? nodeLog(config.log) : undefined
  const app = Fastify({
    ...listenerOptions(config),
    ...(log !== undefined ? log.fastifyOptions : { logger: redactingLogger(opts.logger ?? false), logController: new GatewayLogController() }),
    // request.ip / hostname / protocol read forwarding headers from the same peers the proxy trusts
    trustProxy: config.node.trustProxy as boolean, // Fastify takes a hop count too; its types leave it out
    // Close idle keep-alive sockets on close so the process can exit; busy ones finish their request.
    forceCloseConnections: 'idle',
    // We drain ourselves (not-ready, drain.delay, then close): a request read while the listener
    // closes is still served rather than answered 503.
    return503OnClosing: false,
  })
  // before the gateway's routes: every route, the 404 handler included, ends with an access line
  if (log !== undefined && config.log.requests === 'access') addAccessLog(app, log.destination)
  let address: string
  try {
    await app.register(gateway, opts.worker === undefined ? { config } : { config, worker: opts.worker })
    // workers of one node: SO_REUSEPORT where the runtime has it (the kernel spreads connections), else the primary
    const shared = opts.worker === undefined ? undefined : workerListenOptions(config.node.port)
    address = await app.listen({ host: config.node.host, port: config.node.port, ...shared })
    if (opts.worker !== undefined) app.log.info({ connections: shared === undefined ? 'primary round robin' : 'kernel (SO_REUSEPORT)' }, 'worker listens')
  } catch (err) {
    await app.close().catch(() => {}) // a failed boot (a taken port) leaves no timer or listener behind
    log?.destination.close()
    throw err
  }
  log?.destination.flush() // the "listening" line now, not with the next full buffer
  if (nodeTls !== undefined) {
    // SIGHUP: read the certificate files again; new handshakes use them, open connections are kept
    const reload = (): void => {
      try {
        (app.server as unknown as tls.Server).setSecureContext(secureContextOf(nodeTls))
        app.log.info({ cert: nodeTls.cert }, 'TLS certificate reloaded')
      } catch (err) {
        app.log.error({ err, cert: nodeTls.cert }, 'TLS reload failed: the previous certificate stays')
      }
    }
    process.on('SIGHUP', reload)
    app.server.once('close', () => { process.off('SIGHUP', reload) })
  }
  let closing: Promise<void> | undefined
  const close = async (): Promise<void> => {
    closing ??= drainAndClose(app, config, log)
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
    // log rotation: logrotate moves the file, SIGHUP makes the node write to a new one
    if (log !== undefined && config.log.destination !== 'stdout') process.on('SIGHUP', () => { log.destination.reopen() })
  }
  return { app, address, config, close }
}

async function drainAndClose (app: FastifyInstance, config: GatewayConfig, log: NodeLog | undefined): Promise<void> {
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
  log?.destination.close() // every buffered line written before the process exits
}

/** Logger options whose `err` serializer hides URL credentials (a Redis URL in an error never reaches the log). */
function redactingLogger (logger: FastifyServerOptions['logger']): FastifyServerOptions['logger'] {
  if (logger === true) return { serializers: { err: redactError } }
  if (typeof logger === 'object' && logger !== null && !('serializers' in logger)) return { ...logger, serializers: { err: redactError } }
  return logger
}

type NodeTls = NonNullable<GatewayConfig['node']['tls']>

function secureContextOf (t: NodeTls): tls.SecureContextOptions & { requestCert: boolean } {
  return {
    cert: readFileSync(t.cert),
    key: readFileSync(t.key),
    ca: t.ca === undefined ? undefined : readFileSync(t.ca),
    requestCert: t.requestCert,
    minVersion: t.minVersion,
  }
}

/** Fastify's server options for node.tls / node.http2 (HTTP/1.1 stays available by ALPN). */
function listenerOptions (config: GatewayConfig): Record<string, unknown> {
  const t = config.node.tls
  if (t === undefined) return {}
  const https = { ...secureContextOf(t), rejectUnauthorized: t.requestCert }
  return config.node.http2 ? { http2: true, https: { ...https, allowHTTP1: true } } : { https }
}

export const defaultNodeId = (): string => `${os.hostname()}-${process.pid}`
