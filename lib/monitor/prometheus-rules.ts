// The alert rules as a Prometheus rule file over the metrics each node exports, for teams that alert
// from Prometheus: same names, thresholds, `for` and severities. PromQL aggregates over every scraped node.
import { RULE_METRICS, type AlertRule, type RuleMetric } from './rule.js'

export interface PrometheusRuleFile {
  groups: Array<{ name: string, interval: string, rules: PrometheusRule[] }>
}
export interface PrometheusRule {
  alert: string
  expr: string
  for?: string
  labels: Record<string, string>
  annotations: Record<string, string>
}

/** The PromQL of a rule's metric (without the comparison). */
export function promql (metric: RuleMetric, window: string, upstream?: string): string {
  const up = upstream === undefined ? [] : [`upstream=${JSON.stringify(upstream)}`]
  const sel = (...m: string[]): string => m.length === 0 ? '' : `{${m.join(',')}}`
  const s = sel(...up)
  // a target counts healthy when at least half of the nodes see it eligible (as {admin}/cluster/metrics)
  const perTarget = `avg by (upstream, target) (upstream_target_healthy${s})`
  switch (metric) {
    case 'error_rate': return `sum(rate(proxy_requests_total${sel(...up, 'status_class="5xx"')}[${window}])) / sum(rate(proxy_requests_total${s}[${window}]))`
    case 'request_rate': return `sum(rate(proxy_requests_total${s}[${window}]))`
    case 'p99_ms': return `histogram_quantile(0.99, sum by (le) (rate(proxy_request_duration_seconds_bucket${s}[${window}]))) * 1000`
    case 'average_response_time_ms': return `sum(rate(proxy_request_duration_seconds_sum${s}[${window}])) / sum(rate(proxy_request_duration_seconds_count${s}[${window}])) * 1000`
    case 'healthy_ratio': return `(count(${perTarget} >= 0.5) or vector(0)) / count(${perTarget})`
    case 'unhealthy_targets': return `(count(${perTarget} < 0.5) or vector(0))`
    case 'nodes': return 'max(cluster_nodes)'
    case 'cpu_percent': return 'max(rate(process_cpu_seconds_total[1m])) * 100'
    case 'rss_mb': return 'max(process_resident_memory_bytes) / 1048576'
    case 'event_loop_lag_ms': return 'max(nodejs_eventloop_lag_p99_seconds) * 1000'
  }
}

export function prometheusRules (rules: readonly AlertRule[], o: { cluster: string, interval: number }): PrometheusRuleFile {
  return {
    groups: [{
      name: `fastify-ha-gateway-${o.cluster}`,
      interval: seconds(o.interval),
      rules: rules.map((r) => ({
        alert: r.name,
        expr: `${promql(r.condition.metric, r.window, r.upstream)} ${r.condition.op} ${r.condition.threshold}`,
        ...(r.for > 0 ? { for: seconds(r.for) } : {}),
        labels: { severity: r.severity, cluster: o.cluster, ...(r.upstream === undefined ? {} : { upstream: r.upstream }) },
        annotations: {
          summary: `${r.name}: ${r.when}${r.upstream === undefined ? '' : ` on upstream ${r.upstream}`}`,
          description: `${r.condition.metric} is {{ $value }} (${r.condition.op} ${r.condition.threshold}): ${RULE_METRICS[r.condition.metric]}`,
        },
      })),
    }],
  }
}

function seconds (ms: number): string { return `${Math.max(1, Math.round(ms / 1000))}s` }
