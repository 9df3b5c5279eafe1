import type { Registry } from 'prom-client'
import { counter, gauge } from './registry.js'

/** Upgrade counts of one (route, upstream), read by prom-client at scrape time. */
class UpgradeCounters {
  upgrades = 0
  open = 0
  constructor (readonly labels: Readonly<Record<'route' | 'upstream', string>>) {}
}

export interface UpgradeMetrics {
  /** An upgrade request reached the proxy. */
  upgrade (route: string, upstream: string): void
  /** A tunnel opened; call `closed()` on the handle once when it ends. */
  opened (route: string, upstream: string): { closed: () => void }
}

const stores = new WeakMap<Registry, Map<string, UpgradeCounters>>()

/** proxy_upgrades_total and proxy_upgraded_connections (open now), by route and upstream. */
export function createUpgradeMetrics (registry: Registry): UpgradeMetrics {
  let store = stores.get(registry)
  if (store === undefined) stores.set(registry, store = new Map())
  const all = store
  const of = (route: string, upstream: string): UpgradeCounters => {
    const key = `${route}\u0000${upstream}`
    let c = all.get(key)
    if (c === undefined) all.set(key, c = new UpgradeCounters({ route, upstream }))
    return c
  }
  counter(registry, {
    name: 'proxy_upgrades_total',
    help: 'Upgrade requests (WebSocket and others) by route and upstream',
    labelNames: ['route', 'upstream'] as const,
    collect () {
      this.reset()
      for (const c of all.values()) if (c.upgrades > 0) this.inc(c.labels, c.upgrades)
    },
  })
  gauge(registry, {
    name: 'proxy_upgraded_connections',
    help: 'Upgraded connections (WebSocket and others) open now, by route and upstream',
    labelNames: ['route', 'upstream'] as const,
    collect () {
      this.reset()
      for (const c of all.values()) this.set(c.labels, c.open)
    },
  })
  return {
    upgrade (route, upstream) { of(route, upstream).upgrades++ },
    opened (route, upstream) {
      const c = of(route, upstream)
      c.open++
      let done = false
      return { closed () { if (!done) { done = true; c.open-- } } }
    },
  }
}
