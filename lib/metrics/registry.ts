import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type CounterConfiguration, type GaugeConfiguration, type HistogramConfiguration } from 'prom-client'

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

/** A Counter on `registry` (the one already there under that name, if any). */
export function counter<T extends string> (registry: Registry, config: Omit<CounterConfiguration<T>, 'registers'>): Counter<T> {
  return metricOnce(registry, config.name, () => new Counter<T>({ ...config, registers: [registry] }))
}

/** A Gauge on `registry` (the one already there under that name, if any). */
export function gauge<T extends string> (registry: Registry, config: Omit<GaugeConfiguration<T>, 'registers'>): Gauge<T> {
  return metricOnce(registry, config.name, () => new Gauge<T>({ ...config, registers: [registry] }))
}

/** A Histogram on `registry` (the one already there under that name, if any). */
export function histogram<T extends string> (registry: Registry, config: Omit<HistogramConfiguration<T>, 'registers'>): Histogram<T> {
  return metricOnce(registry, config.name, () => new Histogram<T>({ ...config, registers: [registry] }))
}
