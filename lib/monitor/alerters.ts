// Alerters: where a notification goes. Each send() only logs or enqueues, so evaluation never waits on a receiver.
import { WebhookNotifier } from '../failover/notifier-webhook.js'
import { toAlertmanager, toSlack, type Alert } from './alert.js'
import { severityRank, type AlertFormat, type Severity, type SinkType } from './rule.js'

export interface Alerter {
  /** Lowest severity this alerter sends. */
  readonly minSeverity: Severity
  send (alert: Alert): void
  close? (): Promise<void>
}

export interface AlertLogger {
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
}

export type { AlertFormat }

export interface AlerterConfig {
  type: SinkType
  url?: string
  headers?: Record<string, string>
  /** ms per POST. */
  timeout?: number
  minSeverity?: Severity
  format?: AlertFormat
  /** Tries after a failed POST. */
  retries?: number
  maxQueue?: number
}

export class LogAlerter implements Alerter {
  constructor (private readonly log: AlertLogger, readonly minSeverity: Severity = 'info') {}

  send (a: Alert): void {
    const obj = { alert: a }
    if (a.status === 'resolved') this.log.info(obj, `alert resolved: ${a.rule}: ${a.message}`)
    else if (severityRank(a.severity) >= severityRank('error')) this.log.error(obj, `alert firing: ${a.rule}: ${a.message}`)
    else this.log.warn(obj, `alert firing: ${a.rule}: ${a.message}`)
  }
}

const BODIES: Record<AlertFormat, (a: Alert) => unknown> = { json: (a) => a, alertmanager: toAlertmanager, slack: toSlack }

/** POSTs each alert (bounded queue, retried with full-jitter backoff, never blocks). */
export class WebhookAlerter implements Alerter {
  readonly minSeverity: Severity
  readonly webhook: WebhookNotifier<Alert>

  constructor (c: AlerterConfig & { url: string }, log: AlertLogger) {
    this.minSeverity = c.minSeverity ?? 'info'
    this.webhook = new WebhookNotifier<Alert>({
      url: c.url,
      headers: c.headers,
      timeout: c.timeout ?? 5000,
      maxQueue: c.maxQueue ?? 100,
      retries: c.retries ?? 5,
      body: BODIES[c.format ?? 'json'],
      onError: (err, a) => log.warn({ err, rule: a.rule, status: a.status, url: c.url }, 'alert webhook failed'),
    })
  }

  send (a: Alert): void { this.webhook.notify(a) }
  async close (): Promise<void> { await this.webhook.close() }
}

/** The alerters of the config; none configured: the log. */
export function createAlerters (configs: readonly AlerterConfig[] | undefined, log: AlertLogger): Alerter[] {
  if (configs === undefined || configs.length === 0) return [new LogAlerter(log)]
  return configs.map((c) => c.type === 'webhook' && c.url !== undefined
    ? new WebhookAlerter({ ...c, url: c.url }, log)
    : new LogAlerter(log, c.minSeverity))
}

/** Hand an alert to every alerter whose minSeverity it meets (a resolved alert goes where its firing went). */
export function dispatch (alerters: readonly Alerter[], a: Alert): void {
  for (const x of alerters) {
    if (severityRank(a.severity) < severityRank(x.minSeverity)) continue
    try { x.send(a) } catch { /* an alerter's bug must not stop the others */ }
  }
}
