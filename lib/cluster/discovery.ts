// Service discovery: where an upstream's targets come from when it says `discovery: { service }`.
//
// Registry format (registry.ts), so any language can register an instance directly:
//   SET     <cluster>:svc:{<service>}:<id>  '{"id":"<id>","url":"http://10.0.0.7:3000","weight":1,"metadata":{}}'  PX <ttl ms>
//   ZADD    <cluster>:svc:{<service>}       <epoch-ms when that key expires>  <id>
//   PUBLISH <cluster>:svc:changed           <service>        (optional: gateways refresh at once)
// Repeat the SET and ZADD every ttl/3 ms; to deregister, DEL the key, ZREM the id and PUBLISH.
// An instance is live while its key exists; `id` must match the key's id; `<service>` and `<id>`
// hold no spaces or braces. Gateways read every service they route to once per heartbeat.
import type { ClusterContext } from './context.js'
import { clusterKeys, assertKeyPart } from './keys.js'
import type { RedisClient } from './redis-connection.js'
import { RedisLink } from './redis-link.js'
import { registryBeat, registryList, registryRemove } from './registry.js'
import { Ticker } from './ticker.js'

export interface ServiceInstance {
  id: string
  url: string
  weight?: number
  metadata?: Record<string, unknown>
}

export type InstancesListener = (instances: ServiceInstance[]) => void

export interface ServiceDiscovery {
  /** The live instances of `service` now, sorted by id. */
  list (service: string): Promise<ServiceInstance[]>
  /** `fn` gets the instance list once known and after each change; returns the unwatch function. */
  watch (service: string, fn: InstancesListener): () => void
  close (): Promise<void>
}

/** Instances from configuration; `set()` replaces a service's list and tells its watchers. */
export class StaticDiscovery implements ServiceDiscovery {
  private readonly services = new Map<string, ServiceInstance[]>()
  private readonly listeners = new Map<string, Set<InstancesListener>>()

  constructor (services: Record<string, ServiceInstance[]> = {}) {
    for (const [name, list] of Object.entries(services)) this.services.set(name, normalize(list))
  }

  async list (service: string): Promise<ServiceInstance[]> {
    return [...(this.services.get(service) ?? [])]
  }

  watch (service: string, fn: InstancesListener): () => void {
    const set = this.listeners.get(service) ?? new Set()
    this.listeners.set(service, set)
    set.add(fn)
    const now = [...(this.services.get(service) ?? [])]
    queueMicrotask(() => { if (set.has(fn)) fn(now) })
    return () => { set.delete(fn) }
  }

  set (service: string, instances: ServiceInstance[]): void {
    const list = normalize(instances)
    this.services.set(service, list)
    for (const fn of this.listeners.get(service) ?? []) fn([...list])
  }

  async close (): Promise<void> { this.listeners.clear() }
}

interface Watched {
  listeners: Set<InstancesListener>
  ticker: Ticker
  /** JSON of the last list delivered; undefined until the first successful read. */
  last: string | undefined
  instances: ServiceInstance[]
}

/**
 * Reads the registry once per `interval` for every watched service, and at once when a
 * registrant PUBLISHes the service's name. With Redis down, watchers keep the last list
 * they got: the node's own health checks judge those targets meanwhile.
 */
export class RedisDiscovery implements ServiceDiscovery {
  private readonly watched = new Map<string, Watched>()
  private unsubscribe: (() => void) | undefined
  private unResubscribed: (() => void) | undefined
  private closed = false
  private readonly onUp = (): void => { for (const w of this.watched.values()) w.ticker.trigger() }

  constructor (private readonly ctx: ClusterContext, private readonly o: { interval: number }) {}

  async list (service: string): Promise<ServiceInstance[]> {
    return normalize(await registryList<ServiceInstance>(this.ctx.link, this.ctx.keys.service(service)))
  }

  watch (service: string, fn: InstancesListener): () => void {
    assertKeyPart('service', service)
    let w = this.watched.get(service)
    if (w === undefined) {
      const entry: Watched = { listeners: new Set(), ticker: new Ticker(() => this.poll(service, entry), this.o.interval), last: undefined, instances: [] }
      w = entry
      this.watched.set(service, entry)
      this.listen()
      entry.ticker.start()
    } else if (w.last !== undefined) {
      const now = [...w.instances]
      const set = w.listeners
      queueMicrotask(() => { if (set.has(fn)) fn(now) })
    }
    w.listeners.add(fn)
    const entry = w
    return () => {
      entry.listeners.delete(fn)
      if (entry.listeners.size > 0 || this.watched.get(service) !== entry) return
      this.watched.delete(service)
      entry.ticker.stop().catch(noop)
    }
  }

  async close (): Promise<void> {
    this.closed = true
    this.unsubscribe?.()
    this.unResubscribed?.()
    this.ctx.link.off('up', this.onUp)
    const stops = [...this.watched.values()].map((w) => w.ticker.stop())
    this.watched.clear()
    await Promise.all(stops)
  }

  private listen (): void {
    if (this.unsubscribe !== undefined || this.closed) return
    this.unsubscribe = this.ctx.pubsub.subscribe(this.ctx.keys.servicesChannel, (service) => this.watched.get(service)?.ticker.trigger())
    this.unResubscribed = this.ctx.pubsub.onResubscribed(this.onUp)
    this.ctx.link.on('up', this.onUp)
  }

  private async poll (service: string, w: Watched): Promise<void> {
    if (!this.ctx.link.enabled) return
    let instances: ServiceInstance[]
    try {
      instances = await this.list(service)
    } catch {
      return // Redis down: keep the last list (the link reported the outage)
    }
    const sig = JSON.stringify(instances)
    if (sig === w.last || this.closed) return
    w.last = sig
    w.instances = instances
    for (const fn of w.listeners) fn([...instances])
  }
}

/** Keep instances with a usable id, http(s) url and positive weight; sorted by id. */
function normalize (list: ServiceInstance[]): ServiceInstance[] {
  const out: ServiceInstance[] = []
  for (const i of list) {
    if (typeof i.id !== 'string' || i.id === '' || typeof i.url !== 'string' || !/^https?:\/\/[^\s]+$/.test(i.url)) continue
    if (i.weight !== undefined && !(typeof i.weight === 'number' && Number.isFinite(i.weight) && i.weight > 0)) continue
    const inst: ServiceInstance = { id: i.id, url: i.url }
    if (i.weight !== undefined) inst.weight = i.weight
    if (i.metadata !== undefined && typeof i.metadata === 'object' && i.metadata !== null) inst.metadata = i.metadata
    out.push(inst)
  }
  return out.sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

export interface RegisterServiceOptions {
  /** An ioredis client (any options: every call gets a deadline here). */
  redis: RedisClient
  /** The gateways' `cluster.name`. */
  cluster: string
  service: string
  id: string
  url: string
  weight?: number
  metadata?: Record<string, unknown>
  /** ms the entry lives without a heartbeat (default 3000); it is refreshed every ttl/3. */
  ttl?: number
  onError?: (err: Error) => void
}

export interface ServiceRegistration {
  /** Resolves after the first successful registration. */
  readonly registered: Promise<void>
  /** Stop heartbeating and deregister at once (best effort: otherwise the TTL lapses). */
  stop (): Promise<void>
}

/** For Node services: register `url` under `service` and keep it alive until stop(). */
export function registerService (o: RegisterServiceOptions): ServiceRegistration {
  const keys = clusterKeys(o.cluster)
  const group = keys.service(o.service)
  assertKeyPart('id', o.id)
  const ttl = o.ttl ?? 3000
  const link = new RedisLink(o.redis, { onError: o.onError })
  const entry: ServiceInstance = { id: o.id, url: o.url }
  if (o.weight !== undefined) entry.weight = o.weight
  if (o.metadata !== undefined) entry.metadata = o.metadata
  let resolve: () => void = noop
  const registered = new Promise<void>((r) => { resolve = r })
  const ticker = new Ticker(async () => {
    try {
      const fresh = await registryBeat(link, group, o.id, entry, ttl)
      if (fresh) await link.call('publish', (c) => c.publish(keys.servicesChannel, o.service))
      resolve()
    } catch {
      // retried at the next beat; the link reported the outage
    }
  }, Math.max(1, Math.floor(ttl / 3)))
  // an ioredis client created with lazyConnect waits for connect(): start it, never wait for it
  if (o.redis.status === 'wait') o.redis.connect().catch(noop)
  // register as soon as the connection is up rather than at the next beat
  const onReady = (): void => ticker.trigger()
  o.redis.on('ready', onReady)
  ticker.start()
  return {
    registered,
    async stop () {
      o.redis.off('ready', onReady)
      await ticker.stop()
      try {
        await registryRemove(link, group, o.id)
        await link.call('publish', (c) => c.publish(keys.servicesChannel, o.service))
      } catch {}
      link.dispose()
    },
  }
}

function noop (): void {}
