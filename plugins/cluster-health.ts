// Cluster-shared health: wires this node's health checks to the cluster's pub/sub, through decorators only.
//
// Out: a passive ejection (gatewayHealth event `ejected`) or an opened circuit (the load balancer's
// failover event `circuit_opened`) is published as a hint with an expiry: the ejection's end, or the
// circuit's open period (lib/cluster/health-hints.ts has the wire format).
// In: a hint from another node goes to gatewayHealth.applyHint; the rule that decides whether it is
// taken, and what ends it, is in lib/health/index.ts (applyHint) and the README ("Cluster-shared health").
// Hints are never re-broadcast: only a node's own ejections and circuits are published.
// Shared probing (`healthCheck.active.shared`): a lease in Redis picks the one node that probes an upstream
// per interval; it publishes each result and the others take it (lib/cluster/shared-probes.ts).
// Also: the `healthCheck` options of the shared config apply at run time (cluster.config.watch ->
// gatewayHealth.configure restarts the checks of an upstream whose options changed).
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { optional } from './optional.js'
import { HealthHints, type HealthHint } from '../lib/cluster/health-hints.js'
import { SharedProbes } from '../lib/cluster/shared-probes.js'
import type { FailoverEvent } from '../lib/failover/events.js'
import { createHealthHintMetrics } from '../lib/metrics/health-hint-metrics.js'

export interface ClusterHealthOptions {
  /** ms; the longest a received hint may keep a target out, whatever the sender asked. Default 60 s. */
  maxHintTtl?: number
}

async function clusterHealthPlugin (fastify: FastifyInstance, opts: ClusterHealthOptions): Promise<void> {
  const log = fastify.log.child({ component: 'cluster-health' })
  const cluster = fastify.cluster
  const health = fastify.gatewayHealth
  const gm = optional(fastify, 'gatewayMetrics')
  const metrics = gm === undefined ? undefined : createHealthHintMetrics(gm.registry)
  const hints = new HealthHints(cluster.context, {
    nodeId: cluster.nodeId,
    maxTtl: opts.maxHintTtl,
    onError: (err) => log.warn({ err }, 'health hint listener failed'),
  })
  let open = true

  const publish = (upstream: string, target: string, kind: HealthHint['kind'], until: number): void => {
    if (!open || !cluster.redisEnabled) return
    // fire and forget: never on a request's critical path, and a lost hint only costs the others their own failures
    void hints.publish({ upstream, target, kind, until }).then((sent) => { if (sent) metrics?.sent(kind) })
  }

  // ---- out: this node's own verdicts ----
  const unsubscribe = health.subscribe((e) => {
    if (e.type === 'ejected') publish(e.upstream, e.target.id, 'ejected', e.until)
  })
  fastify.loadBalancer.notifications.add({
    notify (e: FailoverEvent) {
      if (e.type === 'circuit_opened') publish(e.upstream, e.target, 'circuit_open', e.timestamp + e.openMs)
    },
  })

  // ---- in: the other nodes' hints ----
  hints.onHint((h) => {
    const outcome = health.applyHint(h.upstream, h.target, { kind: h.kind, from: h.from, until: h.until })
    metrics?.received(h.kind, outcome)
    if (outcome !== 'applied') log.debug({ upstream: h.upstream, target: h.target, kind: h.kind, from: h.from, outcome }, 'health hint not applied')
  })

  // ---- shared probing: only with Redis (without it every node probes on its own) ----
  const probes = cluster.redisEnabled
    ? new SharedProbes(cluster.context, {
      nodeId: cluster.nodeId,
      onHolder: (upstream, holder) => log.info({ upstream, holder, self: holder === cluster.nodeId }, 'shared probing: the lease holder probes this upstream'),
    })
    : undefined
  if (probes !== undefined) health.setProbeCoordinator(probes)

  // ---- healthCheck options of the shared config, at run time ----
  const unwatch = cluster.config.watch((config) => {
    for (const [name, u] of Object.entries(config.upstreams)) health.configure(name, u.healthCheck)
  })

  // subscriptions once the app is ready, so a failed boot leaves no connection behind
  fastify.addHook('onReady', async () => {
    hints.start()
    probes?.onResult((r) => { health.applySharedProbe(r.upstream, r.target, r.result) })
  })
  fastify.addHook('onClose', async () => {
    open = false
    unsubscribe()
    unwatch()
    await hints.close()
    await probes?.close() // hands the leases this node holds over at once
  })
}

export const clusterHealth = fp(clusterHealthPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-cluster-health',
  dependencies: ['fastify-ha-gateway-load-balancer', 'fastify-ha-gateway-cluster', 'fastify-ha-gateway-health-check'],
  decorators: { fastify: ['loadBalancer', 'cluster', 'gatewayHealth'] },
})
export default clusterHealth
