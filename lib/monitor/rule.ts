// Alert rules: `when` is one named cluster metric, an operator and a number. Parsed at boot; no eval.

export const SEVERITIES = ['info', 'warning', 'error', 'critical'] as const
export type Severity = typeof SEVERITIES[number]

/** Where alerts (and failover notifications) go: a log line, or a webhook POST. */
export const SINK_TYPES = ['log', 'webhook'] as const
export type SinkType = typeof SINK_TYPES[number]
/** A webhook alerter's body: the alert as JSON, Alertmanager API v2 alerts, or a Slack incoming-webhook message. */
export const ALERT_FORMATS = ['json', 'alertmanager', 'slack'] as const
export type AlertFormat = typeof ALERT_FORMATS[number]

/** Cluster metrics a rule may name, with what each one means (README and errors list them). */
export const RULE_METRICS = {
  error_rate: 'share of requests answered 5xx or failed by the proxy, over the rule\'s window',
  healthy_ratio: 'healthy targets / targets, over the whole cluster (or the rule\'s upstream)',
  p99_ms: 'p99 latency over the window (ms), from the nodes\' merged histograms',
  average_response_time_ms: 'mean latency over the window (ms)',
  request_rate: 'requests per second over the window',
  unhealthy_targets: 'targets most nodes see unhealthy',
  nodes: 'live gateway nodes',
  cpu_percent: 'highest CPU % of one node',
  rss_mb: 'highest resident memory of one node (MiB)',
  event_loop_lag_ms: 'highest event-loop delay p99 of one node (ms)',
} as const
export type RuleMetric = keyof typeof RULE_METRICS
/** Metrics of a node, not of an upstream: a rule with `upstream` may not name them. */
export const NODE_METRICS: ReadonlySet<RuleMetric> = new Set(['nodes', 'cpu_percent', 'rss_mb', 'event_loop_lag_ms'])

export const OPERATORS = ['>', '>=', '<', '<=', '==', '!='] as const
export type Operator = typeof OPERATORS[number]

export const WINDOWS = ['1m', '5m'] as const
export type RuleWindow = typeof WINDOWS[number]

export interface Condition { metric: RuleMetric, op: Operator, threshold: number }

export interface AlertRule {
  name: string
  /** The condition as written (for messages). */
  when: string
  condition: Condition
  /** ms the condition must hold before the rule fires (0: at once). */
  for: number
  window: RuleWindow
  severity: Severity
  /** ms between two notifications of a still-firing rule. */
  cooldown: number
  upstream?: string
}

/** A rule as the config holds it (durations already in ms). */
export interface AlertRuleConfig {
  name: string
  when: string
  for?: number
  window?: RuleWindow
  severity?: Severity
  cooldown?: number
  upstream?: string
}

/** The seed article's two rules, applied when `alerts.rules` is absent. */
export const DEFAULT_RULES: readonly AlertRuleConfig[] = [
  { name: 'high_error_rate', when: 'error_rate > 0.05', severity: 'warning', cooldown: 300_000 },
  { name: 'low_healthy_instances', when: 'healthy_ratio < 0.7', severity: 'critical', cooldown: 60_000 },
]

const CONDITION = /^\s*([a-z_][a-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)\s*$/i

/** Parses `error_rate > 0.05`; throws an Error whose message says what is wrong. */
export function parseCondition (when: string): Condition {
  const m = CONDITION.exec(when)
  if (m === null) throw new Error(`must be "<metric> <operator> <number>", e.g. "error_rate > 0.05" (operators: ${OPERATORS.join(' ')})`)
  const metric = m[1]
  if (!Object.hasOwn(RULE_METRICS, metric)) throw new Error(`unknown metric "${metric}" (known: ${Object.keys(RULE_METRICS).join(', ')})`)
  const threshold = Number(m[3])
  if (!Number.isFinite(threshold)) throw new Error(`threshold is not a finite number: ${m[3]}`)
  return { metric: metric as RuleMetric, op: m[2] as Operator, threshold }
}

/** Problems of a rule config as [key, message] pairs (the config cross-check adds the path). */
export function ruleIssues (r: AlertRuleConfig): Array<[string, string]> {
  const out: Array<[string, string]> = []
  let c: Condition | undefined
  try { c = parseCondition(r.when) } catch (err) { out.push(['when', (err as Error).message]) }
  if (c !== undefined && r.upstream !== undefined && NODE_METRICS.has(c.metric)) {
    out.push(['upstream', `${c.metric} is a metric of nodes, not of an upstream: drop upstream or pick another metric`])
  }
  return out
}

export function compileRule (r: AlertRuleConfig): AlertRule {
  return {
    name: r.name,
    when: r.when.trim(),
    condition: parseCondition(r.when),
    for: r.for ?? 0,
    window: r.window ?? '1m',
    severity: r.severity ?? 'warning',
    cooldown: r.cooldown ?? 300_000,
    upstream: r.upstream,
  }
}

/** The rules that apply: the configured ones, or the defaults when none are configured. */
export function compileRules (rules: readonly AlertRuleConfig[] | undefined): AlertRule[] {
  return (rules ?? DEFAULT_RULES).map(compileRule)
}

/** True when `value` meets the condition; no value (no traffic, no targets) never does. */
export function holds (c: Condition, value: number | undefined): boolean {
  if (value === undefined || Number.isNaN(value)) return false
  switch (c.op) {
    case '>': return value > c.threshold
    case '>=': return value >= c.threshold
    case '<': return value < c.threshold
    case '<=': return value <= c.threshold
    case '==': return value === c.threshold
    case '!=': return value !== c.threshold
  }
}

export function severityRank (s: Severity): number { return SEVERITIES.indexOf(s) }
