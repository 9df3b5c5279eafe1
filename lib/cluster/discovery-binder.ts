// Binding discovered instances to upstream pools: `upstreams.<name>.discovery: { service }` adds the
// live instances of `service` (a ServiceDiscovery: the Redis registry, or static) to the upstream's
// static targets. Framework-free; the discovery plugin feeds it the config and starts and closes it.
//
// - An instance is added when the source lists it and removed when it leaves; a removed target
//   finishes the requests in flight on it.
// - Static targets win: an instance whose id is a static target's id is ignored.
// - Config sync rebuilds a pool from its static targets ('updated'): the discovered Target objects
//   (and their health records) are put back at once, in the same tick.
// - Without a source there is no registry: said once per upstream, and it serves its static targets.
import type { UpstreamEntry, UpstreamRegistry } from '../upstream/registry.js'
import type { Target } from '../upstream/target.js'
import { redactText } from '../config/redact.js'
import { isKeyPart } from './keys.js'
import type { ServiceDiscovery, ServiceInstance } from './discovery.js'

/** The upstreams as the config gives them: those with `discovery.service` are bound. */
export type DiscoveryUpstreams = Record<string, { discovery?: { service: string }, targets?: ReadonlyArray<{ id: string }> }>

export interface DiscoveryBinderLog {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
}

export interface DiscoveryBinderOptions {
  /** The load balancer's upstreams: pools changed in place, 'updated' and 'removed' followed. */
  upstreams: UpstreamRegistry
  /** Where instances come from; undefined: none (each bound upstream serves its static targets). */
  source: ServiceDiscovery | undefined
  log: DiscoveryBinderLog
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

export class DiscoveryBinder {
  private readonly bindings = new Map<string, Binding>()
  private readonly warned = new Set<string>()
  private wanted: Wanted = new Map()
  private started = false
  private readonly onUpdated = (entry: UpstreamEntry): void => {
    // config sync: a pool was reconciled with its static targets (same tick: no request sees it without its instances)
    const b = this.bindings.get(entry.name)
    if (b === undefined) return
    b.staticIds = new Set(entry.pool.targets.filter((t) => b.targets.get(t.id) !== t).map((t) => t.id))
    this.sync(entry.name, b)
  }

  private readonly onRemoved = (entry: UpstreamEntry): void => {
    const b = this.bindings.get(entry.name)
    if (b === undefined) return
    this.bindings.delete(entry.name)
    b.unwatch()
  }

  constructor (private readonly o: DiscoveryBinderOptions) {
    o.upstreams.on('updated', this.onUpdated)
    o.upstreams.on('removed', this.onRemoved)
  }

  /** The upstreams to bind (the boot config, then each applied one); bound at once once started. */
  want (upstreams: DiscoveryUpstreams | undefined): void {
    this.wanted = wantedOf(upstreams)
    if (this.started) this.applyWanted()
  }

  /** Bind what is wanted and follow it from now on. */
  start (): void {
    this.started = true
    this.applyWanted()
  }

  /** Upstreams bound now, with their service. */
  bound (): Map<string, string> {
    return new Map([...this.bindings].map(([name, b]) => [name, b.service]))
  }

  /** Stop following sources and the registry; the pools keep the targets they hold. */
  close (): void {
    this.started = false
    this.o.upstreams.off('updated', this.onUpdated)
    this.o.upstreams.off('removed', this.onRemoved)
    for (const b of this.bindings.values()) b.unwatch()
    this.bindings.clear()
  }

  private warnOnce (key: string, obj: object, msg: string): void {
    if (this.warned.has(key)) return
    this.warned.add(key)
    this.o.log.warn(obj, msg)
  }

  /** Make the upstream's pool hold its static targets plus the binding's instances. O(targets), on changes only. */
  private sync (name: string, b: Binding): void {
    const entry = this.o.upstreams.get(name)
    if (entry === undefined) return
    const pool = entry.pool
    const log = this.o.log
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
          this.warnOnce(`${name}:${i.id}`, { upstream: name, service: b.service, target: i.id }, 'a discovered instance has the id of a target the upstream already holds: ignored')
          continue
        }
        try {
          b.targets.set(i.id, pool.add({ id: i.id, url: i.url, weight, metadata: i.metadata }))
        } catch (err) {
          this.warnOnce(`bad:${name}:${i.id}:${i.url}`, { upstream: name, service: b.service, target: i.id, url: i.url, err: (err as Error).message }, 'a discovered instance cannot be a target: ignored')
          continue
        }
        log.info({ upstream: name, service: b.service, target: i.id, url: redactText(i.url) }, 'discovered target added')
        continue
      }
      if (holder === undefined) pool.add(t) // config sync rebuilt the pool: the same Target, its state kept
      else if (holder !== t) { b.targets.delete(i.id); continue }
      t.setMetadata(i.metadata)
      if (t.weight !== weight) pool.setWeight(i.id, weight)
    }
  }

  private bind (name: string, service: string, staticIds: Set<string>): void {
    const cur = this.bindings.get(name)
    if (cur !== undefined && cur.service === service) {
      cur.staticIds = staticIds
      this.sync(name, cur)
      return
    }
    this.unbind(name)
    const source = this.o.source
    if (source === undefined) {
      this.warnOnce(`nosource:${name}`, { upstream: name, service, staticTargets: staticIds.size },
        staticIds.size > 0
          ? `upstreams.${name}.discovery: no service registry without cluster.redis; serving the static targets only`
          : `upstreams.${name}.discovery: no service registry without cluster.redis; the upstream has no target and answers 503`)
      return
    }
    if (!isKeyPart(service)) {
      this.warnOnce(`badname:${name}`, { upstream: name, service }, `upstreams.${name}.discovery.service cannot be a registry key (spaces or braces): ignored`)
      return
    }
    const b: Binding = { service, staticIds, targets: new Map(), instances: [], unwatch: noop }
    this.bindings.set(name, b)
    b.unwatch = source.watch(service, (instances) => {
      if (this.bindings.get(name) !== b) return
      b.instances = instances
      this.sync(name, b)
    })
  }

  private unbind (name: string): void {
    const b = this.bindings.get(name)
    if (b === undefined) return
    this.bindings.delete(name)
    b.unwatch()
    b.instances = []
    this.sync(name, b) // takes the discovered targets out of a pool that stays
  }

  private applyWanted (): void {
    for (const name of [...this.bindings.keys()]) if (!this.wanted.has(name)) this.unbind(name)
    for (const [name, w] of this.wanted) this.bind(name, w.service, w.staticIds)
  }
}

function wantedOf (upstreams: DiscoveryUpstreams | undefined): Wanted {
  const out: Wanted = new Map()
  for (const [name, u] of Object.entries(upstreams ?? {})) {
    if (u.discovery !== undefined) out.set(name, { service: u.discovery.service, staticIds: new Set((u.targets ?? []).map((t) => t.id)) })
  }
  return out
}

function noop (): void {}
