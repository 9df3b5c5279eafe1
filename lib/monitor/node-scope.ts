// When this process is one of several worker processes of one node (node.workers), the monitor evaluates
// and shows the node, not the process: lib/workers/monitor-scope.ts makes this from the worker's link.
import type { AlertStore } from './alert-store.js'
import type { NodeSummary } from './summary.js'

export interface NodeScope {
  /** This process evaluates the node's alert rules: one worker of the node (the primary names it), else none would be one. */
  evaluates (): boolean
  /** Give the node this process's own summary (called once, when the monitor registers). */
  contribute (own: () => NodeSummary): void
  /** The node's summary: every worker's, merged (summary-merge.ts); rejects when they cannot be gathered. */
  summary (): Promise<NodeSummary>
  /** Where the node's alert states live when there is no Redis (the primary, so one evaluator's states outlive it). */
  readonly alertStore: AlertStore
}
