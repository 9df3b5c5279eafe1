// The cluster plugin: the suite's Redis connection, membership, the shared config, state and cache.
//
// An adapter: boot precedence, apply ordering and PUT validation of the shared config live in
// lib/cluster/shared-config.ts (SharedConfigRuntime); this file wires it to Fastify's hooks, the
// metrics and the membership heartbeat, and decorates `fastify.cluster`.
import { readFileSync } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import {
  DistributedCache, Membership, StateManager, closeRedisConnection, createClusterContext, type NodeInfo, type RedisClient,
} from '../lib/cluster/index.js'
import { duplicateFailFast, resolveRedisClient } from '../lib/cluster/redis-client.js'
import { SHARED_CONFIG_KEYS, SharedConfigRuntime, type SharedConfigRuntimeOptions } from '../lib/cluster/shared-config.js'
import { isNormalizedConfig, redactError, redactText, validateConfig, type GatewayConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { createClusterMetrics } from '../lib/metrics/cluster-metrics.js'
import type { ClusterNode, GatewayCluster, SharedConfigApi } from '../types/index.js'
import { optional, optionalForeign } from './optional.js'

/** The keys of the config every node shares through the store. */
export { SHARED_CONFIG_KEYS }

export interface ClusterPluginOptions {
  /** The node's config (normalized or input): node and cluster settings, and the seed of the shared config. */
  config: GatewayConfig | GatewayConfigInput
  /** An ioredis client to use instead of `cluster.redis` (yours: not closed). Default: `fastify.redis` when registered. */
  redis?: RedisClient
  /** ms boot waits at most for Redis's first verdict, so a restarting node starts on the store's config. Default 1000; 0: no wait. */
  bootWait?: number
  /** ms; commandTimeout of the cluster's own connection (the rate limiter keeps its own deadline on gatewayRedis). Default 1000. */
  commandTimeout?: number
  /** ms; deadline of every call of the cluster components. Default 1500. */
  callTimeout?: number
  /**
   * Without Redis: the store of the node's shared config when another process holds it (node.workers: the primary,
   * which judges every PUT). Default: this process's memory. Ignored with Redis.
   */
  configStore?: SharedConfigRuntimeOptions['store']
}

const VERSION = packageVersion()

async function clusterPlugin (fastify: FastifyInstance, opts: ClusterPluginOptions): Promise<void> {
  const cfg = isNormalizedConfig(opts.config) ? opts.config : validateConfig(opts.config)
  // errors logged here may quote a Redis URL or a config value: credentials hidden
  const log = fastify.log.child({ component: 'cluster' }, { serializers: { err: redactError } })
  const interval = cfg.cluster.heartbeatInterval

  // ---- the connection: a client the app gave us, @fastify/redis, or our own from cluster.redis ----
  // the rate limiter's client, batched. Its own deadline (lib/ratelimit/deadline.ts) fails fast and discounts our
  // loop's stalls; ioredis's commandTimeout is a plain timer, so it stays well past that deadline's cap (was 200 ms:
  // on a saturated CPU it fired on timely replies, each a store error)
  const redis = resolveRedisClient({
    existing: [opts.redis, optionalForeign(fastify, 'redis')],
    config: cfg.cluster.redis,
    connection: { commandTimeout: 1000, autoPipelining: false, coalesceWrites: false, onError: noop },
  })
  const base = redis.client
  // the cluster components' client: same server, longer deadlines (a loaded Redis may take > 200 ms)
  const client = base === undefined ? undefined : duplicateFailFast(base, opts.commandTimeout ?? 1000)
  if (base !== undefined && optional(fastify, 'gatewayRedis') === undefined) fastify.decorate<RedisClient>('gatewayRedis', base)

  let lastRedisError = ''
  const ctx = createClusterContext({
    client,
    name: cfg.cluster.name,
    timeout: opts.callTimeout ?? 1500,
    onError: (err) => {
      // once per outage (the link) or per subscriber error: never per request
      if (err.message !== lastRedisError) log.warn({ err: redactText(err.message) }, 'cluster redis error')
      lastRedisError = err.message
    },
  })
  const gm = optional(fastify, 'gatewayMetrics')
  const metrics = gm === undefined ? undefined : createClusterMetrics(gm.registry)
  metrics?.setRedisUp(false)
  ctx.link.on('up', () => { lastRedisError = ''; metrics?.setRedisUp(true); log.info('cluster redis up') })
  ctx.link.on('down', () => { metrics?.setRedisUp(false) })

  const membership = new Membership(ctx, {
    self: { id: cfg.node.id, address: cfg.node.host, port: cfg.node.port, version: VERSION },
    heartbeatInterval: interval,
  })
  membership.on('join', (n: NodeInfo) => log.info({ node: n.id, address: `${n.address}:${n.port}` }, 'node joined'))
  membership.on('leave', (n: NodeInfo, reason: string) => log.info({ node: n.id, reason }, 'node left'))
  membership.on('change', (nodes: NodeInfo[]) => metrics?.setNodes(nodes.length))
  metrics?.setNodes(1)

  const runtime = await SharedConfigRuntime.open({
    config: cfg,
    context: ctx,
    client,
    store: opts.configStore,
    log,
    bootWait: opts.bootWait,
    onApplied: (version, propagation) => {
      metrics?.setConfigVersion(version)
      if (propagation !== undefined) metrics?.observePropagation(propagation)
      membership.update({ configVersion: version })
    },
  })
  const state = new StateManager(ctx)
  const cache = new DistributedCache(ctx)

  fastify.addHook('onReady', async () => {
    await runtime.boot()
    if (client === undefined) return
    cache.start()
    // port 0: heartbeat once the listener knows its port (onListen)
    if (cfg.node.port !== 0) membership.start()
  })

  fastify.addHook('onListen', async () => {
    const addr = fastify.server.address()
    if (addr !== null && typeof addr === 'object') membership.update({ port: addr.port })
    if (client !== undefined) membership.start()
  })

  // graceful shutdown: the others drop this node at once instead of after the TTL
  fastify.addHook('preClose', async () => { await membership.leave() })
  fastify.addHook('onClose', async () => {
    await membership.close()
    await runtime.close()
    await cache.close()
    await ctx.close()
    if (client !== undefined) await closeRedisConnection(client)
    await redis.close()
  })

  const config: SharedConfigApi = {
    get version () { return runtime.version },
    get refused () { return runtime.refused },
    current: () => runtime.current(),
    get: async () => await runtime.get(),
    put: async (shared, ifMatchVersion) => await runtime.put(shared, ifMatchVersion),
    watch: (fn) => runtime.watch(fn),
  }

  const decorator: GatewayCluster = {
    nodeId: cfg.node.id,
    nodes: () => membership.nodes() as ClusterNode[],
    on (event, fn) { membership.on(event, fn); return this },
    off (event, fn) { membership.off(event, fn); return this },
    config,
    state,
    cache,
    get redisUp () { return ctx.link.up },
    redisEnabled: client !== undefined,
    context: ctx,
    setStatus (status) { membership.update({ status: status === 'draining' ? 'draining' : 'ok' }) },
    setSummary (fn) { membership.setSummary(fn) },
    announce () { membership.announce() },
  }
  fastify.decorate('cluster', decorator)
}

function packageVersion (): string {
  // plugins/ in the source tree, dist/plugins/ once built
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'fastify-ha-gateway' && typeof pkg.version === 'string') return pkg.version
    } catch {}
  }
  return '0.0.0'
}

function noop (): void {}

export const cluster = fp(clusterPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-cluster',
})
export default cluster
