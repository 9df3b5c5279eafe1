// Cluster metrics: membership size, applied config version, how long a config write took to reach this node, Redis up.
import type { Registry } from 'prom-client'
import { gauge, histogram } from './registry.js'

export interface ClusterMetrics {
  /** Number of nodes in this node's view (itself included). */
  setNodes (n: number): void
  setConfigVersion (v: number): void
  /** Seconds from the write (Redis's clock, doc.updatedAt) to the apply here (local clock). */
  observePropagation (seconds: number): void
  setRedisUp (up: boolean): void
}

export function createClusterMetrics (registry: Registry): ClusterMetrics {
  const nodes = gauge(registry, { name: 'cluster_nodes', help: 'Gateway nodes in this node\'s cluster view (itself included)' })
  const version = gauge(registry, { name: 'config_version', help: 'Version of the shared config this node applies (0: its file, never stored)' })
  const propagation = histogram(registry, {
    name: 'config_propagation_seconds',
    help: 'Time from a config write in Redis to its apply on this node (Redis clock to local clock)',
    // sub-second is the goal (pub/sub); up to a heartbeat or more when a notice was missed
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  })
  const redisUp = gauge(registry, { name: 'redis_up', help: '1 while the cluster\'s Redis answers, else 0' })
  return {
    setNodes: (n) => nodes.set(n),
    setConfigVersion: (v) => version.set(v),
    // clocks of two machines: a negative skew is counted as 0
    observePropagation: (s) => propagation.observe(Math.max(0, s)),
    setRedisUp: (up) => redisUp.set(up ? 1 : 0),
  }
}
