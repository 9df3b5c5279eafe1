// The state machine of one rule: inactive -> pending (`for`) -> firing -> resolved (inactive), with a
// cooldown between two notifications of a rule that keeps firing. Pure: the clock is passed in.
import { holds, type AlertRule } from './rule.js'

/** What the cluster remembers of one rule (stored as JSON in Redis, so a takeover carries on). */
export type RuleState =
  | { status: 'inactive' }
  | { status: 'pending', since: number, value: number }
  | { status: 'firing', since: number, notifiedAt: number, value: number }

export const INACTIVE: RuleState = Object.freeze({ status: 'inactive' })

export type Transition = 'firing' | 'resolved'

export interface Step {
  state: RuleState
  /** A notification to send, if any: `firing` (first, or again after the cooldown) or `resolved`. */
  notify?: Transition
  /** When the firing began (for `resolved`, the firing that ended). */
  startsAt?: number
}

/** One evaluation of `rule` at `now` with the metric's current `value` (undefined: no data). */
export function step (rule: AlertRule, state: RuleState, value: number | undefined, now: number): Step {
  const on = holds(rule.condition, value)
  if (!on) {
    if (state.status === 'firing') return { state: INACTIVE, notify: 'resolved', startsAt: state.since }
    return { state: INACTIVE }
  }
  const v = value as number
  switch (state.status) {
    case 'inactive':
      if (rule.for > 0) return { state: { status: 'pending', since: now, value: v } }
      return { state: { status: 'firing', since: now, notifiedAt: now, value: v }, notify: 'firing', startsAt: now }
    case 'pending':
      if (now - state.since < rule.for) return { state: { ...state, value: v } }
      return { state: { status: 'firing', since: now, notifiedAt: now, value: v }, notify: 'firing', startsAt: now }
    case 'firing':
      if (now - state.notifiedAt >= rule.cooldown) {
        return { state: { status: 'firing', since: state.since, notifiedAt: now, value: v }, notify: 'firing', startsAt: state.since }
      }
      return { state: { ...state, value: v } }
  }
}

/** A stored state, checked (a foreign or old value reads as inactive instead of breaking evaluation). */
export function parseRuleState (raw: string | null | undefined): RuleState {
  if (raw === null || raw === undefined) return INACTIVE
  try {
    const s = JSON.parse(raw) as Record<string, unknown>
    const num = (k: string): boolean => typeof s[k] === 'number' && Number.isFinite(s[k])
    if (s.status === 'pending' && num('since') && num('value')) return s as RuleState
    if (s.status === 'firing' && num('since') && num('notifiedAt') && num('value')) return s as RuleState
  } catch {}
  return INACTIVE
}
