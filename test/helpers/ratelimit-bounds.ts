// Each algorithm's documented guarantee, checked over a list of admissions: how far past it they went.
import type { LimitRule } from '../../lib/ratelimit/types.js'

export interface Admission {
  /** ms since EPOCH_MS */
  at: number
  cost: number
}

/**
 * The most units by which `admissions` exceed the rule's guarantee (<= 0: within it).
 *   fixed_window: units per aligned window <= limit.
 *   sliding_window: at every admission, prev * (W - e) / W + cur <= limit (the estimate over admission times).
 *   token_bucket: in every span [t_i, t_j], units <= limit + (t_j - t_i) * limit / W.
 */
export function excess (rule: LimitRule, admissions: Admission[]): number {
  const list = [...admissions].sort((a, b) => a.at - b.at)
  const W = rule.window
  let worst = -Infinity
  if (rule.algorithm === 'fixed_window') {
    const per = new Map<number, number>()
    for (const a of list) {
      const w = Math.floor(a.at / W)
      per.set(w, (per.get(w) ?? 0) + a.cost)
    }
    for (const units of per.values()) worst = Math.max(worst, units - rule.limit)
  } else if (rule.algorithm === 'sliding_window') {
    const per = new Map<number, number>()
    for (const a of list) {
      const w = Math.floor(a.at / W)
      per.set(w, (per.get(w) ?? 0) + a.cost)
      const e = a.at - w * W
      worst = Math.max(worst, (per.get(w - 1) ?? 0) * (W - e) / W + per.get(w)! - rule.limit)
    }
  } else {
    for (let i = 0; i < list.length; i++) {
      let units = 0
      for (let j = i; j < list.length; j++) {
        units += list[j].cost
        worst = Math.max(worst, units - rule.limit - (list[j].at - list[i].at) * rule.limit / W)
      }
    }
  }
  return worst === -Infinity ? 0 : worst
}

/** Units in the busiest span of `d` ms (for the sliding window's span bound limit * (1 + d / W)). */
export function busiestSpan (admissions: Admission[], d: number): number {
  const list = [...admissions].sort((a, b) => a.at - b.at)
  let best = 0
  let units = 0
  let i = 0
  for (let j = 0; j < list.length; j++) {
    units += list[j].cost
    while (list[j].at - list[i].at > d) units -= list[i++].cost
    best = Math.max(best, units)
  }
  return best
}
