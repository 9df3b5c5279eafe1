// Service discovery feeding upstream targets: `upstreams.<name>.discovery: { service }` adds the live
// instances of `service` in the registry (lib/cluster/discovery.ts; key format in the README) to the
// upstream's static targets, through the load balancer's runtime target changes.
//
// - An instance is added when the registry lists it (at once when its registrant publishes, else at the
//   next read, one heartbeat at most) and removed when it leaves (deregistered, or its TTL lapsed).
//   A removed target finishes the requests in flight on it.
// - Static targets win: an instance whose id is a static target's id is ignored.
// - Config sync rebuilds a pool from the static targets; the discovered Target objects (and their
//   health records) are put back at once, in the same tick.
// - Without Redis there is no registry: boot says so, and the upstream serves its static targets.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { RedisDiscovery, isKeyPart, type ServiceDiscovery, type ServiceInstance } from '../lib/cluster/index.js'
import type { UpstreamEntry } from '../lib/upstream/registry.js'
import type { Target } from '../lib/upstream/target.js'
import { redactText } from '../lib/config/redact.js'

export interface DiscoveryPluginOptions {
  /** `upstreams` of the config: those with `discovery.service` are fed from the registry. */
  upstreams?: Record<string, { discovery?: { service: string }, targets?: ReadonlyArray<{ id: string }> }>
  /** Where instances come from. Default: the cluster's Redis registry (needs `cluster.redis`), read every `interval`. */
  discovery?: ServiceDiscovery
  /** ms between two reads of the registry; default 1000 (the gateway passes cluster.heartbeatInterval). */
  interval?: number
}

interface Binding {
  readonly service: string
  /** Ids of the upstream's static targets: never taken over by an instance. */
  staticIds: Set<string>
  /** The Target objects this binding added, by id. */
  readonly targets: Map<string, Target>
  instances: ServiceInstance[]
  unwatch: () => void
}

type Wanted = Map<string, { service: string, staticIds: Set<string> }>

async function discoveryPlugin (fastify: FastifyInstance, opts: DiscoveryPluginOptions): Promise<void> {
  const log = fastify.log.child({ component: 'discovery' })
  const lb = fastify.loadBalancer
  const cluster = fastify.hasDecorator('cluster') ? fastify.cluster : undefined
  let source: ServiceDiscovery | undefined = opts.discovery
  let ownSource = false
  if (source === undefined && cluster?.redisEnabled === true) {
    source = new RedisDiscovery(cluster.context, { interval: opts.interval ?? 1000 })
    ownSource = true
  }
  const bindings = new Map<string, Binding>()
  const warned = new Set<string>()
  let wanted = wantedOf(opts.upstreams)
  let started = false

  const warnOnce = (key: string, obj: object, msg: string): void => {
    if (warned.has(key)) return
    warned.add(key)
    log.warn(obj, msg)
  }

  /** Make the upstream's pool hold its static targets plus the binding's instances. O(targets), on changes only. */
  function sync (name: string, b: Binding): void {
    const entry = lb.upstreams.get(name)
    if (entry === undefined) return
    const pool = entry.pool
    const live = new Map<string, ServiceInstance>()
    for (const i of b.instances) if (!b.staticIds.has(i.id)) live.set(i.id, i)
    for (const [id, t] of b.targets) {
      const i = live.get(id)
      if (i !== undefined && i.url === t.url) continue
      b.targets.delete(id)
      if (pool.get(id) === t && !b.staticIds.has(id)) {
        pool.remove(id)
        log.info({ upstream: name, service: b.service, target: id }, 'discovered target removed')
      }
    }
    for (const i of live.values()) {
      const weight = i.weight ?? 1
      const t = b.targets.get(i.id)
      const holder = pool.get(i.id)
      if (t === undefined) {
        if (holder !== undefined) {
          warnOnce(`${name}:${i.id}`, { upstream: name, service: b.service, target: i.id }, 'a discovered instance has the id of a target the upstream already holds: ignored')
          continue
        }
        try {
          b.targets.set(i.id, pool.add({ id: i.id, url: i.url, weight, metadata: i.metadata }))
        } catch (err) {
          warnOnce(`bad:${name}:${i.id}:${i.url}`, { upstream: name, service: b.service, target: i.id, url: i.url, err: (err as Error).message }, 'a discovered instance cannot be a target: ignored')
          continue
        }
        log.info({ upstream: name, service: b.service, target: i.id, url: redactText(i.url) }, 'discovered target added')
        continue
      }
      if (holder === undefined) pool.add(t) // config sync rebuilt the pool: the same Target, its state kept
      else if (holder !== t) { b.targets.delete(i.id); continue }
      t.metadata = i.metadata ?? {}
      if (t.weight !== weight) pool.setWeight(i.id, weight)
    }
  }

  function bind (name: string, service: string, staticIds: Set<string>): void {
    const cur = bindings.get(name)
    if (cur !== undefined && cur.service === service) {
      cur.staticIds = staticIds
      sync(name, cur)
      return
    }
    unbind(name)
    if (source === undefined) {
      warnOnce(`nosource:${name}`, { upstream: name, service, staticTargets: staticIds.size },
        staticIds.size > 0
          ? `upstreams.${name}.discovery: no service registry without cluster.redis; serving the static targets only`
          : `upstreams.${name}.discovery: no service registry without cluster.redis; the upstream has no target and answers 503`)
      return
    }
    if (!isKeyPart(service)) {
      warnOnce(`badname:${name}`, { upstream: name, service }, `upstreams.${name}.discovery.service cannot be a registry key (spaces or braces): ignored`)
      return
    }
    const b: Binding = { service, staticIds, targets: new Map(), instances: [], unwatch: noop }
    bindings.set(name, b)
    b.unwatch = source.watch(service, (instances) => {
      if (bindings.get(name) !== b) return
      b.instances = instances
      sync(name, b)
    })
  }

  function unbind (name: string): void {
    const b = bindings.get(name)
    if (b === undefined) return
    bindings.delete(name)
    b.unwatch()
    b.instances = []
    sync(name, b) // takes the discovered targets out of a pool that stays
  }

  function applyWanted (): void {
    for (const name of [...bindings.keys()]) if (!wanted.has(name)) unbind(name)
    for (const [name, w] of wanted) bind(name, w.service, w.staticIds)
  }

  // config sync: a pool was reconciled with its static targets (same tick: no request sees it without its instances)
  const onUpdated = (entry: UpstreamEntry): void => {
    const b = bindings.get(entry.name)
    if (b === undefined) return
    b.staticIds = new Set(entry.pool.targets.filter((t) => b.targets.get(t.id) !== t).map((t) => t.id))
    sync(entry.name, b)
  }
  const onRemoved = (entry: UpstreamEntry): void => {
    const b = bindings.get(entry.name)
    if (b === undefined) return
    bindings.delete(entry.name)
    b.unwatch()
  }
  lb.upstreams.on('updated', onUpdated)
  lb.upstreams.on('removed', onRemoved)
  const unwatchConfig = cluster?.config.watch((config) => {
    wanted = wantedOf(config.upstreams)
    if (started) applyWanted()
  })

  // after the cluster's onReady (registered before us): `wanted` is the store's config by now
  fastify.addHook('onReady', async () => {
    started = true
    applyWanted()
  })
  fastify.addHook('onClose', async () => {
    started = false
    unwatchConfig?.()
    lb.upstreams.off('updated', onUpdated)
    lb.upstreams.off('removed', onRemoved)
    for (const b of bindings.values()) b.unwatch()
    bindings.clear()
    if (ownSource) await source?.close()
  })
}

function wantedOf (upstreams: DiscoveryPluginOptions['upstreams']): Wanted {
  const out: Wanted = new Map()
  for (const [name, u] of Object.entries(upstreams ?? {})) {
    if (u.discovery !== undefined) out.set(name, { service: u.discovery.service, staticIds: new Set((u.targets ?? []).map((t) => t.id)) })
  }
  return out
}

function noop (): void {}

export const discovery = fp(discoveryPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-discovery',
  dependencies: ['fastify-ha-gateway-load-balancer'],
  decorators: { fastify: ['loadBalancer'] },
})
export default discovery
