// The AlertManager: once per interval, on the one node that holds the evaluator lease, evaluate every
// rule against the cluster metrics, store the states, then notify. Without Redis the node holds it alone.
// A node of several worker processes evaluates in one of them (`evaluates`), on the node's figures.
import { Ticker } from '../cluster/ticker.js'
import { metricValue, type ClusterMetricsView } from './aggregate.js'
import { makeAlert, type Alert } from './alert.js'
import { INACTIVE, step, type RuleState } from './alert-state.js'
import type { AlertStore } from './alert-store.js'
import { dispatch, type Alerter } from './alerters.js'
import type { AlertRule } from './rule.js'

/** The lease lasts this many intervals: a dead holder is replaced within it plus one interval. */
export const LEASE_INTERVALS = 3

export interface AlertManagerOptions {
  nodeId: string
  cluster: string
  rules: readonly AlertRule[]
  alerters: readonly Alerter[]
  store: AlertStore
  /** ms between evaluations. */
  interval: number
  /** The figures the rules read; a rejection skips the round (onError). */
  metrics: () => ClusterMetricsView | Promise<ClusterMetricsView>
  /** This process evaluates for its node (node.workers: the one worker the primary names). Default: always. */
  evaluates?: () => boolean
  now?: () => number
  onError?: (err: unknown) => void
  /** The evaluator changed, as this node learns it (for the log). */
  onHolder?: (holder: string | undefined) => void
}

export interface FiringAlert { rule: string, severity: string, when: string, upstream?: string, since: string, value: number, lastNotified: string }

export class AlertManager {
  private readonly ticker: Ticker
  private readonly now: () => number
  private holder: string | undefined
  private closed = false

  constructor (private readonly o: AlertManagerOptions) {
    this.now = o.now ?? Date.now
    this.ticker = new Ticker(async () => { await this.evaluate() }, o.interval, o.onError)
  }

  get ttl (): number { return this.o.interval * LEASE_INTERVALS }
  /** The node evaluating now, as last learnt. */
  get evaluator (): string | undefined { return this.holder }
  get isEvaluator (): boolean { return this.holder === this.o.nodeId }

  start (): void { this.ticker.start(false) }

  /** One round: take or keep the lease; if held, evaluate, commit, notify. Resolves the alerts sent. */
  async evaluate (): Promise<Alert[]> {
    const holder = await this.o.store.acquire(this.o.nodeId, this.ttl)
    if (holder !== this.holder) { this.holder = holder; this.o.onHolder?.(holder) }
    if (holder !== this.o.nodeId || this.closed || this.o.evaluates?.() === false) return []
    const view = await this.o.metrics()
    const before = await this.o.store.load()
    const now = this.now()
    const states = new Map<string, RuleState>()
    const alerts: Alert[] = []
    for (const rule of this.o.rules) {
      const value = metricValue(view, rule)
      const s = step(rule, before.get(rule.name) ?? INACTIVE, value, now)
      states.set(rule.name, s.state)
      if (s.notify !== undefined) {
        alerts.push(makeAlert({ rule, status: s.notify, value, startsAt: s.startsAt ?? now, now, cluster: this.o.cluster, nodeId: this.o.nodeId, extra: { totals: summaryOf(view) } }))
      }
    }
    const removed = [...before.keys()].filter((k) => !states.has(k))
    // stored first: a holder that dies after this may lose a notification, but a takeover never repeats one
    if (!await this.o.store.commit(this.o.nodeId, this.ttl, states, removed, alerts)) return []
    for (const a of alerts) dispatch(this.o.alerters, a)
    return alerts
  }

  /** Firing rules and the recent notifications, from the store (any node answers). */
  async list (): Promise<{ evaluator: string | undefined, firing: FiringAlert[], recent: Alert[] }> {
    const [states, recent] = await Promise.all([this.o.store.load(), this.o.store.recent()])
    const firing: FiringAlert[] = []
    for (const rule of this.o.rules) {
      const s = states.get(rule.name)
      if (s?.status !== 'firing') continue
      firing.push({
        rule: rule.name, severity: rule.severity, when: rule.when, ...(rule.upstream === undefined ? {} : { upstream: rule.upstream }),
        since: new Date(s.since).toISOString(), value: s.value, lastNotified: new Date(s.notifiedAt).toISOString(),
      })
    }
    return { evaluator: this.holder, firing, recent }
  }

  async close (): Promise<void> {
    this.closed = true
    await this.ticker.stop()
    // graceful hand-over: another node takes the lease at its next round instead of after the TTL
    if (this.holder === this.o.nodeId) await this.o.store.release(this.o.nodeId).catch(() => {})
    await Promise.allSettled(this.o.alerters.map(async (a) => await a.close?.()))
  }
}

function summaryOf (v: ClusterMetricsView): Record<string, unknown> {
  const t = v.totals
  return { nodes: t.nodes, errorRate1m: t.windows['1m'].errorRate, requestRate1m: t.windows['1m'].requestRate, healthyRatio: t.healthyRatio, healthyTargets: t.healthyTargets, targetsTotal: t.targetsTotal }
}
