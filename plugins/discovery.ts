// Service discovery feeding upstream targets: `upstreams.<name>.discovery: { service }` adds the live
// instances of `service` in the registry (lib/cluster/discovery.ts; key format in the README) to the
// upstream's static targets, through the load balancer's runtime target changes.
//
// An adapter: the binding rules (added, removed, static targets win, config sync puts the discovered
// Target objects back in the same tick) are lib/cluster/discovery-binder.ts's. This file picks the
// source (the cluster's Redis registry by default), feeds the binder the boot config and each applied
// one, and starts and closes it with the app. Without Redis there is no registry: boot says so, and
// the upstream serves its static targets.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { RedisDiscovery, type ServiceDiscovery } from '../lib/cluster/index.js'
import { DiscoveryBinder, type DiscoveryUpstreams } from '../lib/cluster/discovery-binder.js'
import { optional } from './optional.js'

export interface DiscoveryPluginOptions {
  /** `upstreams` of the config: those with `discovery.service` are fed from the registry. */
  upstreams?: DiscoveryUpstreams
  /** Where instances come from. Default: the cluster's Redis registry (needs `cluster.redis`), read every `interval`. */
  discovery?: ServiceDiscovery
  /** ms between two reads of the registry; default 1000 (the gateway passes cluster.heartbeatInterval). */
  interval?: number
}

async function discoveryPlugin (fastify: FastifyInstance, opts: DiscoveryPluginOptions): Promise<void> {
  const cluster = optional(fastify, 'cluster')
  let source: ServiceDiscovery | undefined = opts.discovery
  let ownSource = false
  if (source === undefined && cluster?.redisEnabled === true) {
    source = new RedisDiscovery(cluster.context, { interval: opts.interval ?? 1000 })
    ownSource = true
  }
  const binder = new DiscoveryBinder({ upstreams: fastify.loadBalancer.upstreams, source, log: fastify.log.child({ component: 'discovery' }) })
  binder.want(opts.upstreams)
  const unwatchConfig = cluster?.config.watch((config) => { binder.want(config.upstreams) })

  // after the cluster's onReady (registered before us): the wanted upstreams are the store's config by now
  fastify.addHook('onReady', async () => { binder.start() })
  fastify.addHook('onClose', async () => {
    unwatchConfig?.()
    binder.close()
    if (ownSource) await source?.close()
  })
}

export const discovery = fp(discoveryPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-discovery',
  dependencies: ['fastify-ha-gateway-load-balancer'],
  decorators: { fastify: ['loadBalancer'] },
})
export default discovery
