// A validated config as the load balancer takes it: at boot (the gateway) and on each applied shared
// config (the load balancer's own watch of the cluster's config).
import type { GatewayConfig } from '../config/index.js'
import type { CircuitBreakerOptions } from '../failover/breaker-circuit.js'
import type { FailoverOptions } from '../proxy/failover-registry.js'
import type { UpstreamSpec } from './registry.js'

/** The config's upstreams as the load balancer's specs. */
export function toUpstreamSpecs (config: GatewayConfig): Record<string, UpstreamSpec> {
  const out: Record<string, UpstreamSpec> = {}
  for (const [name, u] of Object.entries(config.upstreams)) {
    out[name] = {
      strategy: u.strategy,
      hashOn: u.hashOn,
      targets: u.targets.map((t) => ({ id: t.id, url: t.url, weight: t.weight, metadata: t.metadata })),
      timeouts: u.timeouts,
      tls: u.tls,
      http2: u.http2,
    }
  }
  return out
}

/** Failover and circuit-breaker options by upstream, as the load balancer (and config sync) take them. */
export function toFailoverSpecs (config: GatewayConfig): { failover: Record<string, FailoverOptions>, circuitBreaker: Record<string, CircuitBreakerOptions> } {
  return {
    failover: Object.fromEntries(Object.entries(config.upstreams).map(([name, u]) => [name, u.failover])),
    circuitBreaker: Object.fromEntries(Object.entries(config.upstreams).flatMap(([name, u]) => u.circuitBreaker === undefined ? [] : [[name, u.circuitBreaker]])),
  }
}
