// The monitor of one worker (node.workers) sees its node: the evaluator is the worker the primary names
// (the prober role: the lowest slot that is up), the summary is every worker's gathered through the primary
// and merged, and without Redis the alert states are the primary's.
import type { NodeScope } from '../monitor/node-scope.js'
import { mergeSummaries } from '../monitor/summary-merge.js'
import type { NodeSummary } from '../monitor/summary.js'
import { IpcAlertStore } from './ipc-alerts.js'
import type { SummaryParts } from './protocol.js'
import type { WorkerLink } from './worker-link.js'

export function workerMonitorScope (link: WorkerLink): NodeScope {
  return {
    evaluates: () => link.prober,
    contribute (own) { link.onCollect('summary', own) },
    async summary () {
      const g = await link.gather('summary') as SummaryParts
      const parts = g.parts.filter((p): p is NodeSummary => p !== null)
      if (g.missing > 0 || parts.length < g.parts.length || parts.length === 0) throw new Error(`the node's summary is incomplete: ${g.missing + g.parts.length - parts.length} worker(s) gave none`)
      return mergeSummaries(parts)
    },
    alertStore: new IpcAlertStore(link),
  }
}
