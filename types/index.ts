// The public type surface: plugin option types and the Fastify declaration merging.
import type { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { UpgradeProxy } from '../lib/proxy/upgrade.js'
import type { Registry } from 'prom-client'
import type { Agent } from 'undici'
import type { Strategy } from '../lib/balancers/types.js'
import type { UpstreamEntry, UpstreamRegistry, UpstreamSpec, UpstreamTimeouts } from '../lib/upstream/registry.js'
import type { Target, TargetSpec, TargetStatus, CircuitState } from '../lib/upstream/target.js'
import type { FailoverOptions, FallbackResponse, FailoverRegistry } from '../lib/proxy/failover-registry.js'
import type { CircuitBreakerOptions } from '../lib/failover/breaker-circuit.js'
import type { Notifications, NotifierSpec } from '../lib/failover/notifier.js'
import type { ClusterContext, ConfigDoc, DistributedCache, NodeInfo, RedisClient, StateManager } from '../lib/cluster/index.js'
import type { GatewayConfig, GatewayConfigInput } from '../lib/config/index.js'
import type { SharedConfig } from '../lib/cluster/shared-config.js'

export type { Strategy, UpstreamSpec, UpstreamTimeouts, TargetSpec, TargetStatus, CircuitState, FailoverOptions, FallbackResponse, CircuitBreakerOptions, NotifierSpec }

/** Per-route proxy settings: in route `config`, or passed to `reply.proxy()`. */
export interface ProxyOptions {
  /** Name of the upstream to send to. */
  upstream?: string
  /** Override of the upstream's strategy for this route. */
  strategy?: Strategy
  /** consistent_hash key: ip | path | header:<name> | cookie:<name>. */
  hashOn?: string
  /** Overrides of the upstream's failover keys for this route. */
  failover?: FailoverOptions
  /** Static answer when no target could serve (no eligible target, or every try failed). */
  fallbackResponse?: FallbackResponse
  /** Route prefix that stripPrefix / rewritePrefix replace (the configured routes set it to their path). */
  gatewayRoute?: string
  /** Remove `gatewayRoute` from the path sent upstream. */
  stripPrefix?: boolean
  /** Replace `gatewayRoute` with this prefix in the path sent upstream. */
  rewritePrefix?: string
  /** Send the client's Host upstream instead of the target's. */
  preserveHost?: boolean
  /** Overrides of the upstream's response timeouts (ms; 0: none, e.g. `body: 0` for an SSE or other long-lived stream). */
  timeouts?: { headers?: number, body?: number }
}

export interface LoadBalancerOptions {
  upstreams?: Record<string, UpstreamSpec>
  /** Gateway-wide default timeouts (ms); an upstream's `timeouts` override them. */
  timeouts?: Partial<UpstreamTimeouts>
  /** Failover by upstream name; an upstream not listed gets the defaults (2 retries on another target). */
  failover?: Record<string, FailoverOptions>
  /** Circuit breakers by upstream name; an upstream not listed has none. */
  circuitBreaker?: Record<string, CircuitBreakerOptions>
  /** Where failover events go (default: the app's log). */
  notify?: NotifierSpec[]
  /**
   * Which peers are trusted proxies, in Fastify's `trustProxy` forms (default false: none). A trusted peer's
   * X-Forwarded-* and Forwarded headers are passed on (X-Forwarded-For appended to); an untrusted one's are
   * replaced by the gateway's own.
   */
  trustProxy?: boolean | number | string | string[]
  agent?: {
    /** ms an idle keep-alive connection to an upstream stays open (default 4000). */
    keepAliveTimeout?: number
    /** Max connections per origin (default unlimited). */
    connections?: number | null
    /** Largest upstream response head in bytes (default 65536); a larger one is a 502 FHG_ERR_UPSTREAM_HEADERS_TOO_LARGE. */
    maxHeaderSize?: number
  }
  /** ms an upgraded (WebSocket) connection may stay silent both ways before it is closed (default 0: never). */
  websocketIdle?: number
  /** ms open upgraded connections get to end by themselves when the app closes, before a 1001 close (default 0). */
  drainTimeout?: number
}

export interface LoadBalancer extends EventEmitter {
  readonly upstreams: UpstreamRegistry
  readonly agent: Agent
  /** Per-upstream retry budgets and circuit breakers. */
  readonly failover: FailoverRegistry
  /** The failover event hub: `notifications.add(notifier)` to subscribe in code. */
  readonly notifications: Notifications
  addUpstream (name: string, spec: UpstreamSpec): UpstreamEntry
  removeUpstream (name: string): boolean
  addTarget (upstream: string, spec: TargetSpec): Target
  removeTarget (upstream: string, id: string): Target
  setWeight (upstream: string, id: string, weight: number): Target
  /** Proxy an upgrade request (the server's 'upgrade' event) on the route whose config is `config`. */
  upgrade (req: IncomingMessage, socket: Duplex, head: Buffer, config: ProxyOptions): void
  /** The open upgraded connections. */
  readonly upgrades: UpgradeProxy
  status (): Record<string, { strategy: Strategy, targets: Array<Record<string, unknown>> }>
}

export interface GatewayMetrics {
  readonly registry: Registry
}

/** The part of the config every node shares through the store (node, cluster, admin, metrics, proxy, drain stay per node). */
export type { SharedConfig }

/** One node of the cluster view. */
export type ClusterNode = NodeInfo

/** `fastify.cluster.config`: the shared config of the cluster (read, PUT, watch). Not lib/config's `ClusterConfig` (the `cluster` config section). */
export interface SharedConfigApi {
  /** Version this node applies now (0: its own file, never stored). */
  readonly version: number
  /** The shared config this node applies, as it was written (input form), with its version. */
  current (): { version: number, config: SharedConfig, updatedAt: number }
  /** The store's document (this node's current one while Redis cannot answer, or before anything was stored). */
  get (): Promise<{ version: number, config: SharedConfig, updatedAt: number }>
  /**
   * Validate, then compare-and-set: stored as ifMatchVersion + 1 if the store still holds ifMatchVersion, published,
   * applied here. Throws ConfigError (invalid; nothing written), ConfigConflictError (stale), FHG_ERR_REDIS_UNAVAILABLE,
   * or FHG_ERR_CONFIG_NOT_APPLIED (stored, but this node failed to switch to it and runs its previous version in full).
   */
  put (config: SharedConfig, ifMatchVersion: number): Promise<{ version: number }>
  /** The last version this node refused (invalid with its own keys, or failed to apply) and why; undefined once a later one applied. */
  readonly refused: { version: number, error: string } | undefined
  /**
   * `fn` runs during each apply on this node with the whole effective config; returns the unwatch function.
   * A watcher that throws refuses the document: the node switches back to the version it ran, in full.
   */
  watch (fn: (config: GatewayConfig, doc: ConfigDoc<SharedConfig>) => void | Promise<void>): () => void
}

/** The `fastify.cluster` decorator. */
export interface GatewayCluster {
  readonly nodeId: string
  /** The view: this node first, then the others by id. */
  nodes (): ClusterNode[]
  on (event: 'join' | 'leave', fn: (node: ClusterNode) => void): this
  off (event: 'join' | 'leave', fn: (node: ClusterNode) => void): this
  readonly config: SharedConfigApi
  readonly state: StateManager
  readonly cache: DistributedCache
  /** True while Redis answers (always false without `cluster.redis`). */
  readonly redisUp: boolean
  /** Whether `cluster.redis` (or a client) was configured: false means single-node, in memory. */
  readonly redisEnabled: boolean
  /** The node's Redis link (deadlines, up/down), key builder and shared subscriber connection: for the suite's plugins (health hints, discovery). */
  readonly context: ClusterContext
  /** What the heartbeat announces (the gateway sets draining when a drain starts). */
  setStatus (status: 'ready' | 'draining'): void
  /** Publish `fn()` with every heartbeat (the monitor's node summary); read back in nodes()[i].summary. */
  setSummary (fn: (() => unknown) | undefined): void
  /** Heartbeat now and have the other nodes read the view at once (the monitor calls it when a target's status changes). */
  announce (): void
}

declare module 'fastify' {
  interface FastifyInstance {
    loadBalancer: LoadBalancer
    gatewayMetrics: GatewayMetrics
    cluster: GatewayCluster
    /** The cluster's Redis client (absent without `cluster.redis`); the rate limiter runs on it. */
    gatewayRedis: RedisClient
  }
  interface FastifyReply {
    /** Send this request to a target of the route's upstream. */
    proxy (opts?: ProxyOptions): FastifyReply
  }
  interface FastifyContextConfig extends ProxyOptions {}
}
