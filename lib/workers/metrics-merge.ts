// One /metrics scrape for the whole node: every worker's registry as JSON, summed by prom-client's
// AggregatorRegistry (counters and histograms add up; a gauge follows its own `aggregator`, sum by default).
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client'

export type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>

/** A worker's part: its registry as JSON (what the primary gathers). */
export async function metricsJson (registry: Registry): Promise<MetricsJson> {
  return await registry.getMetricsAsJSON()
}

/** The node's Prometheus text from every worker's JSON. */
export async function mergeMetrics (parts: MetricsJson[]): Promise<{ text: string, contentType: string }> {
  const merged = AggregatorRegistry.aggregate(parts)
  return { text: await merged.metrics(), contentType: merged.contentType }
}
