// node.workers: the thin adapter in each worker. The node behaves as one node through the primary:
// - {admin}/status and /metrics gather every worker's part (the primary assembles them; admin/metrics options);
// - a passive ejection or an opened circuit in this worker keeps the target out in the others too (a hint);
// - active probe results of the prober worker reach the others (lib/workers/probes.ts).
// Config changes need nothing here: with Redis each worker watches the store; without it the primary holds the
// node's document (lib/workers/ipc-config.ts, given to the cluster plugin as its store).
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { FailoverEvent } from '../lib/failover/events.js'
import { metricsJson } from '../lib/workers/metrics-merge.js'
import type { WorkerStatus } from '../lib/workers/protocol.js'
import type { WorkerLink } from '../lib/workers/worker-link.js'

export interface WorkersPluginOptions {
  link: WorkerLink
}

async function workersPlugin (fastify: FastifyInstance, opts: WorkersPluginOptions): Promise<void> {
  const { link } = opts
  const lb = fastify.loadBalancer
  const health = fastify.gatewayHealth
  const cluster = fastify.cluster

  // ---- this worker's parts of the node's answers ----
  link.onCollect('status', () => {
    let inFlight = 0
    for (const e of lb.upstreams) for (const t of e.pool.targets) inFlight += t.inFlight
    return { slot: link.slot, pid: process.pid, uptimeSeconds: Math.round(process.uptime()), inFlight } satisfies WorkerStatus
  })
  link.onCollect('metrics', async () => fastify.hasDecorator('gatewayMetrics') ? await metricsJson(fastify.gatewayMetrics.registry) : [])

  // ---- out: this worker's own ejections and open circuits (hints are never passed on again) ----
  let open = true
  const unsubscribe = health.subscribe((e) => {
    if (open && e.type === 'ejected') link.share({ kind: 'hint', upstream: e.upstream, target: e.target.id, hint: 'ejected', until: e.until })
  })
  lb.notifications.add({
    notify (e: FailoverEvent) {
      if (open && e.type === 'circuit_opened') link.share({ kind: 'hint', upstream: e.upstream, target: e.target, hint: 'circuit_open', until: e.timestamp + e.openMs })
    },
  })

  // ---- in: what the other workers share ----
  const offShared = link.onShared((s, from) => {
    if (s.kind === 'probe') health.applySharedProbe(s.upstream, s.target, s.result)
    else health.applyHint(s.upstream, s.target, { kind: s.hint, from: `${cluster.nodeId}/worker-${from}`, until: s.until })
  })

  fastify.addHook('onListen', async () => { link.ready() })
  fastify.addHook('onClose', async () => {
    open = false
    unsubscribe()
    offShared()
    link.close()
  })
}

export const workers = fp(workersPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-workers',
  dependencies: ['fastify-ha-gateway-load-balancer', 'fastify-ha-gateway-cluster', 'fastify-ha-gateway-health-check'],
  decorators: { fastify: ['loadBalancer', 'cluster', 'gatewayHealth'] },
})
export default workers
