// The cluster plugin: the suite's Redis connection, membership, the shared config (store, watch, apply), state and cache.
//
// Boot precedence of the shared config (upstreams, routes, rateLimit): the store's document wins; the
// node's own config (the CLI's file) seeds the store only when it holds none; while Redis is down at
// boot the node serves the snapshot of the last config it applied, else its file, and syncs once Redis
// answers. Everything shared applies at runtime on every node, no request in flight dropped: upstreams
// (targets, weights, strategy, hashOn, timeouts) are reconciled in place, their failover and
// circuitBreaker options swapped (requests in flight finish on the state they started with), and the
// routes (with their rateLimit, and rateLimit.default they inherit) become a new route table. Boot-only:
// the limiter's own options (rateLimit.onStoreError, storeTimeout, headers, allowList, trustProxy):
// a PUT that changes them gets 400 naming the key; a stored document that differs is logged and the
// node keeps its own until restarted.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { Cluster } from 'ioredis'
import {
  ClusterConfigManager, DistributedCache, Membership, StateManager, closeRedisConnection, createClusterContext,
  createRedisConnection, failFastOptions, isRedisClient, type ConfigDoc, type NodeInfo, type RedisClient,
} from '../lib/cluster/index.js'
import { ConfigError, configInput, isNormalizedConfig, redactError, redactText, turn, validateConfig, validateConfigAsync, type ConfigIssue, type GatewayConfig, type GatewayConfigInput } from '../lib/config/index.js'
import { GatewayError } from '../lib/errors.js'
import { defaultStateDir } from '../lib/cluster/snapshot.js'
import { createClusterMetrics } from '../lib/metrics/cluster-metrics.js'
import type { CircuitBreakerOptions } from '../lib/failover/breaker-circuit.js'
import type { FailoverOptions } from '../lib/proxy/failover-registry.js'
import type { UpstreamSpec } from '../lib/upstream/registry.js'
import type { ClusterConfig, ClusterNode, GatewayCluster, SharedConfig } from '../types/index.js'

/** The keys of the config every node shares through the store. */
export const SHARED_CONFIG_KEYS = ['upstreams', 'routes', 'rateLimit'] as const
/** The rate limiter's own options: read once when it registers, so a PUT may not change them (rateLimit.default may). */
const BOOT_ONLY_RATE_LIMIT_KEYS = ['onStoreError', 'storeTimeout', 'headers', 'allowList', 'trustProxy'] as const

export interface ClusterPluginOptions {
  /** The node's config (normalized or input): node and cluster settings, and the seed of the shared config. */
  config: GatewayConfig | GatewayConfigInput
  /** Maps an applied config to the load balancer's specs (the gateway passes its toUpstreamSpecs); absent: upstreams are not reconciled. */
  toUpstreamSpecs?: (config: GatewayConfig) => Record<string, UpstreamSpec>
  /** Maps an applied config to the load balancer's failover and circuitBreaker options by upstream (the gateway passes its toFailoverSpecs); absent: not reconciled. */
  toFailoverSpecs?: (config: GatewayConfig) => { failover: Record<string, FailoverOptions>, circuitBreaker: Record<string, CircuitBreakerOptions> }
  /** An ioredis client to use instead of `cluster.redis` (yours: not closed). Default: `fastify.redis` when registered. */
  redis?: RedisClient
  /** ms boot waits at most for Redis's first verdict, so a restarting node starts on the store's config. Default 1000; 0: no wait. */
  bootWait?: number
  /** ms; commandTimeout of the cluster's own connection (the rate limiter keeps its own deadline on gatewayRedis). Default 1000. */
  commandTimeout?: number
  /** ms; deadline of every call of the cluster components. Default 1500. */
  callTimeout?: number
}

const VERSION = packageVersion()

async function clusterPlugin (fastify: FastifyInstance, opts: ClusterPluginOptions): Promise<void> {
  const cfg = isNormalizedConfig(opts.config) ? opts.config : validateConfig(opts.config)
  // errors logged here may quote a Redis URL or a config value: credentials hidden
  const log = fastify.log.child({ component: 'cluster' }, { serializers: { err: redactError } })
  const input = (configInput(cfg) ?? {}) as Record<string, unknown>
  // every node merges the shared document into its own per-node keys, then validates the whole
  const perNode: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(input)) if (!(SHARED_CONFIG_KEYS as readonly string[]).includes(k)) perNode[k] = v
  perNode.node = { ...(input.node as object | undefined), id: cfg.node.id }
  const fileShared = pickShared(input)
  // default: a private directory of this user (0700), not a predictable name in the shared temp dir
  const snapshotPath = cfg.cluster.snapshotPath ?? join(defaultStateDir(), `${cfg.cluster.name}-${snapshotName(cfg.node.id)}.json`)
  const interval = cfg.cluster.heartbeatInterval

  // ---- the connection: a client the app gave us, @fastify/redis, or our own from cluster.redis ----
  const f = fastify as unknown as { redis?: unknown }
  let base: RedisClient | undefined
  let ownBase = false
  if (opts.redis !== undefined) base = opts.redis
  else if (fastify.hasDecorator('redis') && isRedisClient(f.redis)) base = f.redis
  else if (cfg.cluster.redis !== undefined) {
    // the rate limiter's client, batched. Its own deadline (lib/ratelimit/deadline.ts) fails fast and discounts our
    // loop's stalls; ioredis's commandTimeout is a plain timer, so it stays well past that deadline's cap (was 200 ms:
    // on a saturated CPU it fired on timely replies, each a store error)
    base = createRedisConnection(cfg.cluster.redis, { commandTimeout: 1000, autoPipelining: false, coalesceWrites: false, onError: noop })
    ownBase = true
  }
  // the cluster components' client: same server, longer deadlines (a loaded Redis may take > 200 ms)
  const client = base === undefined ? undefined : duplicateFor(base, opts.commandTimeout ?? 1000)
  if (base !== undefined && !fastify.hasDecorator('gatewayRedis')) fastify.decorate<RedisClient>('gatewayRedis', base)

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
  const metrics = fastify.hasDecorator('gatewayMetrics') ? createClusterMetrics(fastify.gatewayMetrics.registry) : undefined
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

  const store = new ClusterConfigManager<SharedConfig>(ctx, {
    interval,
    snapshotPath,
    snapshotPrivateDir: cfg.cluster.snapshotPath === undefined,
    onError: (err) => log.error({ err }, 'shared config not applied: this node keeps its running config'),
  })
  const state = new StateManager(ctx)
  const cache = new DistributedCache(ctx)

  // ---- applying a document ----
  let applied: { version: number, config: SharedConfig, updatedAt: number } = { version: 0, config: fileShared, updatedAt: Date.now() }
  // the effective config this node runs: what a failed apply goes back to
  let running: GatewayConfig = cfg
  /** The last version this node refused (invalid here, or failed to apply), for {admin}/status; cleared by the next good one. */
  let refused: { version: number, error: string } | undefined
  let bootApplied = false
  const userWatchers = new Set<(config: GatewayConfig, doc: ConfigDoc<SharedConfig>) => void | Promise<void>>()
  // a PUT validated its document already: the apply that follows on this node reuses the result
  let validated: { json: string, config: GatewayConfig } | undefined

  const effective = async (shared: unknown): Promise<GatewayConfig> => await validateConfigAsync({ ...perNode, ...(shared as object) })
  /** Boot-only keys (the rate limiter's own options, read when it registered) that `next` changes against what this node runs. */
  const bootOnlyIssues = (next: GatewayConfig): ConfigIssue[] => {
    const ran = cfg.rateLimit as Record<string, unknown>
    const asked = next.rateLimit as Record<string, unknown>
    return BOOT_ONLY_RATE_LIMIT_KEYS.filter((k) => JSON.stringify(ran[k]) !== JSON.stringify(asked[k]))
      .map((k) => ({ path: `rateLimit.${k}`, message: 'cannot change at runtime (the rate limiter reads it at boot): change it in every node\'s file and restart them; rateLimit.default and routes[].rateLimit do change at runtime' }))
  }

  /** Every part of the node switched to `next`: upstreams, their failover, then the watchers (route table, health checks). */
  const switchTo = async (next: GatewayConfig, doc: ConfigDoc<SharedConfig>): Promise<void> => {
    // upstreams first (a new route may name a new upstream), then their failover; watchers (the gateway's route table) last
    if (opts.toUpstreamSpecs !== undefined && fastify.hasDecorator('loadBalancer')) {
      fastify.loadBalancer.upstreams.reconcile(opts.toUpstreamSpecs(next))
      await turn()
    }
    if (opts.toFailoverSpecs !== undefined && fastify.hasDecorator('loadBalancer')) {
      const f = opts.toFailoverSpecs(next)
      fastify.loadBalancer.failover.reconcile(f.failover, f.circuitBreaker)
      await turn()
    }
    // a watcher that throws refuses the document (the node goes back to the previous one)
    for (const fn of userWatchers) {
      await fn(next, doc)
      await turn() // promises alone never yield: let waiting requests in between two parts
    }
  }

  /** Apply `doc` in full, or not at all: on any failure the node runs its previous config again, every part of it. */
  const apply = async (doc: ConfigDoc<SharedConfig>, initial: boolean): Promise<void> => {
    let next: GatewayConfig
    try {
      const json = validated === undefined ? undefined : JSON.stringify(doc.config)
      next = validated !== undefined && validated.json === json ? validated.config : await effective(doc.config)
      await turn()
    } catch (err) {
      refused = { version: doc.version, error: redactText((err as Error).message) }
      throw err // a ConfigError refuses the document: the running config stays
    }
    const drift = bootOnlyIssues(next)
    if (drift.length > 0) {
      log.warn({ version: doc.version, keys: drift.map((i) => i.path) }, 'the shared config changes boot-only keys: this node keeps its own values of them until restarted with the same file')
    }
    const previous = running
    const previousDoc: ConfigDoc<SharedConfig> = { ...applied, rev: '' }
    try {
      await switchTo(next, doc)
    } catch (err) {
      refused = { version: doc.version, error: redactText((err as Error).message) }
      log.error({ err, version: doc.version, running: applied.version }, 'shared config failed to apply: going back to the running version')
      try { await switchTo(previous, previousDoc) } catch (again) { log.error({ err: again }, 'going back to the running version failed') }
      throw err
    }
    running = next
    refused = undefined
    applied = { version: doc.version, config: doc.config, updatedAt: doc.updatedAt }
    metrics?.setConfigVersion(doc.version)
    // Redis's clock at write to ours at apply: what a PUT costs to reach this node
    if (!initial) metrics?.observePropagation((Date.now() - doc.updatedAt) / 1000)
    membership.update({ configVersion: doc.version })
    log.info({ version: doc.version, upstreams: Object.keys(next.upstreams).length }, 'shared config applied')
  }
  store.watch(async (doc) => {
    const initial = !bootApplied
    bootApplied = true
    await apply(doc, initial)
  })

  // ---- boot: the store wins; an empty store is seeded; Redis down: snapshot, else the file ----
  let syncing: Promise<void> | undefined
  const syncWithStore = async (): Promise<void> => {
    syncing ??= (async () => {
      try {
        if (store.current === undefined) {
          const seeded = await store.seedIfEmpty(fileShared)
          if (seeded) log.info('the store held no shared config: seeded it with this node\'s config')
        }
        await store.sync(true)
      } catch (err) {
        log.warn({ err: redactText((err as Error).message) }, 'shared config sync failed: retrying when Redis answers')
      } finally {
        syncing = undefined
      }
    })()
    await syncing
  }

  if (client === undefined) {
    // single node, in memory: the node's own config is version 1
    await store.seedIfEmpty(fileShared)
    applied = { ...store.current!, config: store.current!.config }
    bootApplied = true
    metrics?.setConfigVersion(applied.version)
    membership.update({ configVersion: applied.version })
  }

  fastify.addHook('onReady', async () => {
    if (client === undefined) return
    const up = await firstVerdict(client, opts.bootWait ?? 1000)
    if (up) {
      await syncWithStore()
    } else {
      const snap = await store.loadSnapshot().catch(() => undefined)
      if (snap === undefined) {
        log.warn({ snapshotPath }, 'redis unavailable at boot and no snapshot: serving this node\'s own config; joining once Redis answers')
      } else {
        try {
          bootApplied = true
          await apply(snap, true)
          store.setCurrent(snap)
          log.warn({ version: snap.version, snapshotPath }, 'redis unavailable at boot: serving the snapshot; joining once Redis answers')
        } catch (err) {
          log.error({ err, snapshotPath }, 'snapshot refused: serving this node\'s own config')
        }
      }
    }
    ctx.link.on('up', () => { void syncWithStore() })
    store.start()
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
    await store.close()
    await cache.close()
    await ctx.close()
    if (client !== undefined) await closeRedisConnection(client)
    if (ownBase && base !== undefined) await closeRedisConnection(base)
  })

  const config: ClusterConfig = {
    get version () { return applied.version },
    get refused () { return refused === undefined ? undefined : { ...refused } },
    current: () => ({ ...applied }),
    async get () {
      if (!ctx.link.enabled || !ctx.link.up) return { ...applied }
      const doc = await store.get()
      return doc === undefined ? { ...applied } : { version: doc.version, config: doc.config, updatedAt: doc.updatedAt }
    },
    async put (shared, ifMatchVersion) {
      const issues = sharedShapeIssues(shared)
      if (issues.length > 0) throw new ConfigError(issues)
      // everything a node checks before it applies, checked before anything is stored
      const next = await effective(shared)
      const frozen = bootOnlyIssues(next)
      if (frozen.length > 0) throw new ConfigError(frozen)
      await turn()
      const json = JSON.stringify(shared)
      await turn()
      validated = { json, config: next }
      let doc: ConfigDoc<SharedConfig>
      try {
        doc = await store.put(JSON.parse(json) as SharedConfig, ifMatchVersion)
      } finally {
        validated = undefined
      }
      if (applied.version !== doc.version) {
        // valid, stored, but a part of this node failed to switch (logged): it runs its previous version in full
        throw new GatewayError('CONFIG_NOT_APPLIED', `${doc.version} was stored but this node failed to apply it (${refused?.error ?? 'see the log'}); it keeps running version ${applied.version}`)
      }
      return { version: doc.version }
    },
    watch (fn) {
      userWatchers.add(fn)
      return () => { userWatchers.delete(fn) }
    },
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

/** A node id as a file name: any character but letters, digits, ".", "_" and "-" becomes "_". */
function snapshotName (id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, '_')
}

/** The shared keys of a config input, as JSON (what the store keeps). */
function pickShared (input: Record<string, unknown>): SharedConfig {
  const out: Record<string, unknown> = {}
  for (const k of SHARED_CONFIG_KEYS) if (input[k] !== undefined) out[k] = input[k]
  return JSON.parse(JSON.stringify(out)) as SharedConfig
}

function sharedShapeIssues (shared: unknown): ConfigIssue[] {
  if (typeof shared !== 'object' || shared === null || Array.isArray(shared)) {
    return [{ path: '', message: 'must be an object with upstreams, routes and rateLimit' }]
  }
  return Object.keys(shared).filter((k) => !(SHARED_CONFIG_KEYS as readonly string[]).includes(k))
    .map((k) => ({ path: k, message: 'is not part of the shared config (upstreams, routes, rateLimit): it stays in each node\'s file' }))
}

/** A connection of our own to the same server with the cluster's deadlines, fail-fast whatever the base's options. */
function duplicateFor (base: RedisClient, commandTimeout: number): RedisClient {
  const ff = failFastOptions({ commandTimeout })
  let dup: RedisClient
  if (base instanceof Cluster) {
    dup = base.duplicate(undefined, {
      enableOfflineQueue: false,
      lazyConnect: true,
      enableAutoPipelining: false,
      redisOptions: { ...base.options.redisOptions, commandTimeout, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false },
    })
  } else {
    dup = base.duplicate({ ...ff, lazyConnect: true })
  }
  dup.on('error', noop) // the link reports outages once; ioredis repeats errors on every reconnect
  if (dup.status === 'wait') dup.connect().catch(noop)
  return dup
}

/** Resolves true once the client is ready, false on its first failure or after `ms`. */
async function firstVerdict (client: RedisClient, ms: number): Promise<boolean> {
  if (client.status === 'ready') return true
  if (ms <= 0) return false
  return await new Promise<boolean>((resolve) => {
    const done = (v: boolean): void => {
      clearTimeout(timer)
      client.off('ready', onReady)
      client.off('error', onFail)
      client.off('end', onFail)
      resolve(v)
    }
    const onReady = (): void => done(true)
    const onFail = (): void => done(false)
    const timer = setTimeout(onFail, ms)
    timer.unref()
    client.on('ready', onReady)
    client.on('error', onFail)
    client.on('end', onFail)
  })
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
