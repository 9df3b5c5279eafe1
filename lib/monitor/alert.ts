// The notification an alerter sends, and its Alertmanager and Slack shapes.
import type { Transition } from './alert-state.js'
import type { AlertRule, Severity } from './rule.js'

export interface Alert {
  status: Transition
  rule: string
  severity: Severity
  title: string
  message: string
  /** The metric's value at this evaluation (null: no data, e.g. no traffic any more). */
  value: number | null
  threshold: number
  /** ISO time the firing began. */
  startsAt: string
  /** ISO time it resolved (resolved only). */
  endsAt?: string
  cluster: string
  details: {
    when: string
    metric: string
    window: string
    upstream?: string
    /** The node that evaluated the rule. */
    evaluatedBy: string
    [k: string]: unknown
  }
}

export interface AlertInput {
  rule: AlertRule
  status: Transition
  value: number | undefined
  startsAt: number
  now: number
  cluster: string
  nodeId: string
  extra?: Record<string, unknown>
}

export function makeAlert (i: AlertInput): Alert {
  const r = i.rule
  const c = r.condition
  const scope = r.upstream === undefined ? '' : ` on upstream ${r.upstream}`
  const shown = i.value === undefined ? 'no data' : String(round(i.value))
  const message = i.status === 'firing'
    ? `${c.metric} is ${shown}${scope} (${r.when})`
    : `${c.metric} is ${shown}${scope}: ${r.when} no longer holds`
  return {
    status: i.status,
    rule: r.name,
    severity: r.severity,
    title: `[${i.status.toUpperCase()}] ${r.name}${scope} (${i.cluster})`,
    message,
    value: i.value === undefined ? null : round(i.value),
    threshold: c.threshold,
    startsAt: new Date(i.startsAt).toISOString(),
    ...(i.status === 'resolved' ? { endsAt: new Date(i.now).toISOString() } : {}),
    cluster: i.cluster,
    details: { when: r.when, metric: c.metric, window: r.window, ...(r.upstream === undefined ? {} : { upstream: r.upstream }), evaluatedBy: i.nodeId, ...i.extra },
  }
}

/** Alertmanager API v2 (`POST /api/v2/alerts`): an array of alerts with labels and annotations. */
export function toAlertmanager (a: Alert): unknown[] {
  return [{
    labels: { alertname: a.rule, severity: a.severity, cluster: a.cluster, ...(a.details.upstream === undefined ? {} : { upstream: a.details.upstream }) },
    annotations: { summary: a.title, description: a.message, value: String(a.value), threshold: String(a.threshold) },
    startsAt: a.startsAt,
    ...(a.endsAt === undefined ? {} : { endsAt: a.endsAt }),
  }]
}

const SLACK_COLORS: Record<Severity, string> = { info: '#439FE0', warning: '#f2c744', error: '#e8912d', critical: '#d00000' }

/** A Slack incoming-webhook message. */
export function toSlack (a: Alert): unknown {
  return {
    text: `${a.status === 'firing' ? ':rotating_light:' : ':white_check_mark:'} *${a.title}*\n${a.message}`,
    attachments: [{
      color: a.status === 'resolved' ? '#2eb886' : SLACK_COLORS[a.severity],
      fields: [
        { title: 'severity', value: a.severity, short: true },
        { title: 'value', value: `${String(a.value)} (threshold ${a.threshold})`, short: true },
        { title: 'since', value: a.startsAt, short: true },
        ...(a.endsAt === undefined ? [] : [{ title: 'resolved', value: a.endsAt, short: true }]),
      ],
    }],
  }
}

function round (n: number): number { return Math.round(n * 10000) / 10000 }
