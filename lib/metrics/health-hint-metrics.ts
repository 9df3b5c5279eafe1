// Cluster-shared health: hints this node published, and hints it received with what became of them.
import type { Registry } from 'prom-client'
import { counter } from './registry.js'

export interface HealthHintMetrics {
  sent (kind: string): void
  /** `outcome`: applied, or why not (expired, already_out, last_eligible, ejection_limit, unknown_target). */
  received (kind: string, outcome: string): void
}

export function createHealthHintMetrics (registry: Registry): HealthHintMetrics {
  const sent = counter(registry, {
    name: 'health_hints_sent_total',
    help: 'Health hints this node published (its own passive ejections and opened circuits), by kind',
    labelNames: ['kind'] as const,
  })
  const received = counter(registry, {
    name: 'health_hints_received_total',
    help: 'Health hints received from other nodes, by kind and outcome (applied, or why not)',
    labelNames: ['kind', 'outcome'] as const,
  })
  return {
    sent: (kind) => sent.inc({ kind }),
    received: (kind, outcome) => received.inc({ kind, outcome }),
  }
}
