// The monitor of one worker (node.workers) sees its node: the evaluator is the worker the primary names
// (the prober role: the lowest slot that is up), the summary is every worker's gathered through the primary
// and merged, and without Redis the alert states are the primary's.
import type { NodeScope } from '../monitor/node-scope.js'
import { mergeSummaries } from '../monitor/summary-merge.js'
import type { NodeSummary } from '../monitor/summary.js'
import { IpcAlertStore } from './ipc-alerts.js'
import type { WorkerLink } from './worker-link.js'

export function workerMonitorScope (link: WorkerLink): NodeScope {
  return {
    evaluates: () => link.prober,
    contribute (own) { link.onCollect('summary', own) },
    async summary () {
      const parts = (await link.gather('summary') as Array<NodeSummary | null>).filter((p): p is NodeSummary => p !== null)
      if (parts.length === 0) throw new Error('no worker gave its summary')
      return mergeSummaries(parts)
    },
    alertStore: new IpcAlertStore(link),
  }
}
