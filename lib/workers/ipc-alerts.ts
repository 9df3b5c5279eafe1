// The alert states of a node of workers without Redis: the primary holds them (an in-memory store there,
// host-calls.ts), so the firing rules and recent alerts are the node's whichever worker answers {admin}/alerts,
// and a worker that takes over the evaluation (the evaluator died) carries on from them, as a node taking
// over the Redis lease does. The node's evaluator is the primary's choice (the 'role' message), not a lease:
// acquire() names this node, the monitor asks NodeScope.evaluates(), and the primary accepts a commit only
// from the worker it names.
import type { Alert } from '../monitor/alert.js'
import type { RuleState } from '../monitor/alert-state.js'
import type { AlertStore } from '../monitor/alert-store.js'
import type { WorkerLink } from './worker-link.js'

export class IpcAlertStore implements AlertStore {
  constructor (private readonly link: WorkerLink, private readonly timeout = 5000) {}

  async acquire (nodeId: string): Promise<string> { return nodeId }
  async release (): Promise<void> {}

  async load (): Promise<Map<string, RuleState>> {
    return new Map(await this.link.ask({ op: 'alerts.load' }, this.timeout) as Array<[string, RuleState]>)
  }

  async commit (_nodeId: string, _ttl: number, states: Map<string, RuleState>, removed: string[], alerts: Alert[]): Promise<boolean> {
    return await this.link.ask({ op: 'alerts.commit', states: [...states], removed, alerts }, this.timeout) === true
  }

  async recent (): Promise<Alert[]> {
    return await this.link.ask({ op: 'alerts.recent' }, this.timeout) as Alert[]
  }
}
