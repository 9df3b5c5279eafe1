// One request's answer from the decisions of its route's rules: pure, no Fastify, no clock.
//
// - An enforced rule that refuses: 429 (`deny`), Retry-After the longest wait of the refusing rules.
// - Else an enforced rule whose store failed under fail_closed: 503 (`unavailable`).
// - Else the request goes on (`allow`): fail_open outcomes, shadow refusals and rules of cost 0 never refuse.
// - The headers show one decision: the most restrictive of the enforced rules a store (Redis or the
//   local fallback) decided (headers.ts moreRestrictive); none when no store decided one.
// - The metric label explains the answer, first match wins: local, limited, error_closed, error_open,
//   shadow_limited, allowed.
import type { DecisionLabel } from '../metrics/ratelimit-metrics.js'
import { moreRestrictive } from './headers.js'
import type { Outcome } from './outage.js'

export type CombinedKind = 'allow' | 'deny' | 'unavailable'

export interface Combined {
  readonly kind: CombinedKind
  /** Index of the rule whose decision the headers show; -1: none. */
  readonly shown: number
  /** ms: the longest retryAfterMs of the enforced rules that refused (0 unless `deny`). */
  readonly retryAfter: number
  /** The decision label the route's counters take. */
  readonly label: DecisionLabel
  /** Index of the first shadow rule that would have refused (logged, not enforced); -1: none. */
  readonly shadow: number
}

/**
 * `outcomes[i]` is rule i's outcome, undefined when the rule was not consulted (cost 0). One rule:
 * its outcome may be passed alone (no array on the single-rule path).
 */
export function combine (rules: ReadonlyArray<{ readonly shadow: boolean }>,
  outcomes: Outcome | undefined | ReadonlyArray<Outcome | undefined>): Combined {
  const many = Array.isArray(outcomes)
  const list = outcomes as ReadonlyArray<Outcome | undefined>
  const n = many ? list.length : 1
  let limited = false
  let closed = false
  let open = false
  let local = false
  let retryAfter = 0
  let shown = -1
  let shownOutcome: Outcome | undefined
  let shadow = -1
  for (let i = 0; i < n; i++) {
    const o = many ? list[i] : outcomes as Outcome | undefined
    if (o === undefined) continue
    const r = rules[i]
    if (o.source === 'open') { open = true; continue }
    if (o.source === 'closed') { if (!r.shadow) closed = true; continue }
    if (o.source === 'local') local = true
    if (r.shadow) {
      if (!o.allowed && shadow === -1) shadow = i
      continue
    }
    if (!o.allowed) { limited = true; if (o.retryAfterMs > retryAfter) retryAfter = o.retryAfterMs }
    if (shownOutcome === undefined || moreRestrictive(o, shownOutcome)) { shown = i; shownOutcome = o }
  }
  const label: DecisionLabel = local ? 'local' : limited ? 'limited' : closed ? 'error_closed' : open ? 'error_open' : shadow !== -1 ? 'shadow_limited' : 'allowed'
  return { kind: limited ? 'deny' : closed ? 'unavailable' : 'allow', shown, retryAfter, label, shadow }
}
