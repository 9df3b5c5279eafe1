// Active probes run once per node: only the prober worker (the primary names it) probes, and shares each
// result; the other workers skip their probes and take the shared results (ActiveChecker.applyShared).
// The ProbeCoordinator of lib/health/active.ts, so the checker is the same as across nodes.
import type { ProbeCoordinator } from '../health/active.js'
import type { ProbeResult } from '../health/probe.js'
import type { Target } from '../upstream/target.js'
import type { WorkerLink } from './worker-link.js'

export class WorkerProbes implements ProbeCoordinator {
  /** Probes this worker ran and shared, for tests and the status page. */
  shared = 0
  constructor (private readonly link: WorkerLink) {}

  join (): () => void { return noop }

  shouldProbe (): boolean { return this.link.prober }

  share (upstream: string, target: Target, result: ProbeResult): void {
    this.shared++
    this.link.share({ kind: 'probe', upstream, target: target.id, result })
  }
}

/**
 * The node's coordinator first, then the cluster's (an upstream with `active.shared` and Redis): a worker
 * probes when it is the node's prober and its node holds the cluster's lease; a result goes to both.
 */
export function chainCoordinators (node: ProbeCoordinator, cluster: ProbeCoordinator | undefined): ProbeCoordinator {
  if (cluster === undefined) return node
  return {
    join (upstream, interval) {
      const a = node.join(upstream, interval)
      const b = cluster.join(upstream, interval)
      return () => { a(); b() }
    },
    shouldProbe: (upstream) => node.shouldProbe(upstream) && cluster.shouldProbe(upstream),
    share (upstream, target, result) {
      node.share(upstream, target, result)
      cluster.share(upstream, target, result)
    },
  }
}

function noop (): void {}
