// The public type surface: plugin option types and the Fastify declaration merging.
import type { EventEmitter } from 'node:events'
import type { Registry } from 'prom-client'
import type { Agent } from 'undici'
import type { Strategy } from '../lib/balancers/types.js'
import type { UpstreamEntry, UpstreamRegistry, UpstreamSpec, UpstreamTimeouts } from '../lib/upstream/registry.js'
import type { Target, TargetSpec, TargetStatus, CircuitState } from '../lib/upstream/target.js'

export type { Strategy, UpstreamSpec, UpstreamTimeouts, TargetSpec, TargetStatus, CircuitState }

/** Per-route proxy settings: in route `config`, or passed to `reply.proxy()`. */
export interface ProxyOptions {
  /** Name of the upstream to send to. */
  upstream?: string
  /** Override of the upstream's strategy for this route. */
  strategy?: Strategy
  /** consistent_hash key: ip | path | header:<name> | cookie:<name>. */
  hashOn?: string
}

export interface LoadBalancerOptions {
  upstreams?: Record<string, UpstreamSpec>
  /** Gateway-wide default timeouts (ms); an upstream's `timeouts` override them. */
  timeouts?: Partial<UpstreamTimeouts>
  agent?: {
    /** ms an idle keep-alive connection to an upstream stays open (default 4000). */
    keepAliveTimeout?: number
    /** Max connections per origin (default unlimited). */
    connections?: number | null
  }
}

export interface LoadBalancer extends EventEmitter {
  readonly upstreams: UpstreamRegistry
  readonly agent: Agent
  addUpstream (name: string, spec: UpstreamSpec): UpstreamEntry
  removeUpstream (name: string): boolean
  addTarget (upstream: string, spec: TargetSpec): Target
  removeTarget (upstream: string, id: string): Target
  setWeight (upstream: string, id: string, weight: number): Target
  status (): Record<string, { strategy: Strategy, targets: Array<Record<string, unknown>> }>
}

export interface GatewayMetrics {
  readonly registry: Registry
}

declare module 'fastify' {
  interface FastifyInstance {
    loadBalancer: LoadBalancer
    gatewayMetrics: GatewayMetrics
  }
  interface FastifyReply {
    /** Send this request to a target of the route's upstream. */
    proxy (opts?: ProxyOptions): FastifyReply
  }
  interface FastifyContextConfig extends ProxyOptions {}
}
