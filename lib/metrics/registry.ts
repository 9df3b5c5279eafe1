import { Registry, collectDefaultMetrics } from 'prom-client'

/** A Registry owned by one app (never prom-client's global one), optionally with process metrics. */
export function createRegistry (opts: { defaultMetrics?: boolean, prefix?: string } = {}): Registry {
  const registry = new Registry()
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, prefix: opts.prefix ?? '' })
  return registry
}

/** Get-or-create, so two plugins (or a re-registration) can ask for the same metric. */
export function metricOnce<T> (registry: Registry, name: string, make: () => T): T {
  const existing = registry.getSingleMetric(name)
  return (existing as T | undefined) ?? make()
}
