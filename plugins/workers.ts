// node.workers: the thin adapter in each worker. The node behaves as one node through the primary:
// - {admin}/status and /metrics gather every worker's part (the primary assembles them; admin/metrics options);
// - a passive ejection or an opened circuit in this worker keeps the target out in the others too (a hint);
// - active probe results of the prober worker reach the others (lib/workers/probes.ts);
// - without Redis, a config PUT applied here is applied by every other worker (with Redis, each watches the store).
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import type { FailoverEvent } from '../lib/failover/events.js'
import { metricsJson } from '../lib/workers/metrics-merge.js'
import type { Shared, WorkerStatus } from '../lib/workers/protocol.js'
import type { WorkerLink } from '../lib/workers/worker-link.js'
import type { SharedConfig } from '../types/index.js'

export interface WorkersPluginOptions {
  link: WorkerLink
}

async function workersPlugin (fastify: FastifyInstance, opts: WorkersPluginOptions): Promise<void> {
  const { link } = opts
  const lb = fastify.loadBalancer
  const health = fastify.gatewayHealth
  const cluster = fastify.cluster
  const log = fastify.log.child({ component: 'workers', worker: link.slot })

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

  // ---- config changes: without Redis the store is this worker's memory; the others apply the same document ----
  const fanOut = !cluster.redisEnabled
  let fromPeer = 0
  const unwatch = fanOut
    ? cluster.config.watch((_config, doc) => {
      if (doc.version > fromPeer) link.share({ kind: 'config', version: doc.version, config: doc.config })
    })
    : undefined
  const applyConfig = async (s: Extract<Shared, { kind: 'config' }>): Promise<void> => {
    const running = cluster.config.version
    if (running >= s.version) return
    fromPeer = s.version
    await cluster.config.put(s.config as SharedConfig, running)
  }

  // ---- in: what the other workers share ----
  const offShared = link.onShared((s, from) => {
    if (s.kind === 'probe') health.applySharedProbe(s.upstream, s.target, s.result)
    else if (s.kind === 'hint') health.applyHint(s.upstream, s.target, { kind: s.hint, from: `${cluster.nodeId}/worker-${from}`, until: s.until })
    else if (fanOut) {
      applyConfig(s).catch((err: unknown) => { log.error({ err, version: s.version }, 'config of another worker not applied') })
    }
  })

  fastify.addHook('onListen', async () => { link.ready() })
  fastify.addHook('onClose', async () => {
    open = false
    unsubscribe()
    unwatch?.()
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
