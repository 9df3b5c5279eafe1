import type { Target } from '../upstream/target.js'
import type { UpstreamPool } from '../upstream/pool.js'
import { usable, type Balancer, type PickContext } from './types.js'

/** Longest precomputed cycle (entries); beyond it every pick runs the O(n) nginx pass. */
const MAX_SCHEDULE = 1 << 17
/** Build cost cap: cycle length × distinct weights (~10 ms of work). */
const BUILD_BUDGET = 1e7
/** Schedule entries a pick may skip before it falls back to the nginx pass. */
const MAX_WALK = 64
/** Use the schedule only while at least 1/8 of its weight is eligible (≤ 8 entries walked per pick on average). */
const MIN_USABLE_SHARE = 1 / 8
/** A slow-start ramp is scheduled on its effective weight rounded to tenths of the weight... */
const RAMP_STEPS = 10
/** ...looked at again at most this often (ms): a rebuild only when some target's step moved. */
const RAMP_REFRESH_MS = 500

/**
 * `weighted_round_robin`: smooth weighted round robin as in nginx
 * (ngx_http_upstream_get_peer: current += weight; pick the max; max.current -= total).
 * Proportions are exact over each cycle and the heavy target is interleaved (3:1 -> a a b a).
 *
 * Plain nginx is O(n) per pick. Here the cycle of the sequence (weights reduced by their
 * gcd) is precomputed once per weight change and a pick walks it, skipping entries that are
 * not usable: each target still appears exactly `weight` times per cycle, so the usable ones
 * keep sharing in proportion. The cycle leaves out targets that cannot be routed to (down,
 * drained, open circuit, ejected), and during a slow-start ramp it is built on effective
 * weights rounded to 10 % steps of the weight; it is rebuilt when that picture moves, at most
 * every 500 ms (in between, picks walk the previous cycle and skip what is not usable).
 * Picks stay O(1). Only when the cycle would be too long (or the schedule's targets are mostly
 * busy), picks run the live nginx pass on effective weights (O(n)).
 */
export class WeightedRoundRobinBalancer implements Balancer {
  readonly strategy = 'weighted_round_robin' as const
  private pool: UpstreamPool | undefined
  private version = -1
  private snap: readonly Target[] = []
  /** Weights seen at the last refresh: a status-only version bump must not rebuild the schedule. */
  private weights = new Float64Array(0)
  /** nginx current_weight per target index (live pass). */
  private current = new Float64Array(0)
  /** One smooth cycle of target indices, or undefined when it is too long to precompute. */
  private schedule: Int32Array | undefined
  /** Per target, the step the schedule was built with: 0 not routable, 1..RAMP_STEPS its slow-start share. */
  private steps = new Uint8Array(0)
  /** Configured weight of the targets in the schedule, and when it was built (epoch-ms). */
  private scheduledWeight = 0
  private builtAt = -Infinity
  private cursor = 0
  private useSchedule = false
  /** Epoch-ms at which time alone changes the picture (a ramp ends, an ejection expires). */
  private recheckAt = Infinity

  pick (pool: UpstreamPool, ctx: PickContext): Target | undefined {
    if (pool !== this.pool || pool.version !== this.version || ctx.now >= this.recheckAt) this.refresh(pool, ctx.now)
    if (this.useSchedule) {
      const t = this.walk(ctx)
      if (t !== undefined) return t
    }
    return this.nginxPass(ctx)
  }

  private walk (ctx: PickContext): Target | undefined {
    const s = this.schedule as Int32Array
    const snap = this.snap
    const len = s.length
    const limit = len < MAX_WALK ? len : MAX_WALK
    let c = this.cursor
    for (let k = 0; k < limit; k++) {
      const t = snap[s[c]]
      c = c + 1 === len ? 0 : c + 1
      if (usable(t, ctx)) {
        this.cursor = c
        return t
      }
    }
    return undefined
  }

  /** nginx's pass over every usable target, with slow-start effective weights. */
  private nginxPass (ctx: PickContext): Target | undefined {
    const snap = this.snap
    const cur = this.current
    const now = ctx.now
    let best = -1
    let bestCur = 0
    let total = 0
    for (let i = 0; i < snap.length; i++) {
      const t = snap[i]
      if (!usable(t, ctx)) continue
      const w = t.effectiveWeight(now)
      const c = cur[i] + w
      cur[i] = c
      total += w
      if (best < 0 || c > bestCur) {
        best = i
        bestCur = c
      }
    }
    if (best < 0) return undefined
    cur[best] = bestCur - total
    return snap[best]
  }

  /** O(n), only when the pool's version moves or a ramp step/ejection deadline passes. */
  private refresh (pool: UpstreamPool, now: number): void {
    const targets = pool.targets
    const n = targets.length
    let rebuild = pool !== this.pool || targets !== this.snap
    if (!rebuild) {
      for (let i = 0; i < n; i++) {
        if (targets[i].weight !== this.weights[i]) { rebuild = true; break }
      }
    }
    if (rebuild) {
      const cur = new Float64Array(n)
      if (pool === this.pool) {
        // Keep the live pass's state for targets that survived (the pool re-indexes them).
        const old = this.snap
        for (let j = 0; j < old.length; j++) {
          const idx = old[j].index
          if (idx >= 0 && idx < n && targets[idx] === old[j]) cur[idx] = this.current[j]
        }
      }
      const weights = new Float64Array(n)
      for (let i = 0; i < n; i++) weights[i] = targets[i].weight
      this.current = cur
      this.weights = weights
    }

    // Each target's step: 0 when it cannot be routed to (down, drained, open circuit, ejected),
    // else its slow-start share of its weight in tenths (10 when not ramping).
    const steps = new Uint8Array(n)
    let moved = rebuild
    let usableWeight = 0
    let ramping = false
    let recheckAt = Infinity
    for (let i = 0; i < n; i++) {
      const t = targets[i]
      const w = t.weight
      if (t.isEligible(now)) usableWeight += w
      if (t.ejectedUntil > now && t.ejectedUntil < recheckAt) recheckAt = t.ejectedUntil
      let q = 0
      if (t.isRoutable(now)) {
        q = RAMP_STEPS
        if (t.slowStartUntil > now) {
          ramping = true
          if (t.slowStartUntil < recheckAt) recheckAt = t.slowStartUntil
          q = Math.min(RAMP_STEPS, Math.max(1, Math.round(RAMP_STEPS * t.effectiveWeight(now) / w)))
        }
      }
      steps[i] = q
      if (!moved && this.steps[i] !== q) moved = true
    }
    if (moved) {
      if (rebuild || now - this.builtAt >= RAMP_REFRESH_MS) {
        // The cycle over routable targets, each weight scaled by its step (10 % .. 100 %).
        const scaled = new Float64Array(n)
        let scheduled = 0
        for (let i = 0; i < n; i++) {
          scaled[i] = this.weights[i] * steps[i]
          if (steps[i] > 0) scheduled += this.weights[i]
        }
        this.schedule = scheduled > 0 ? smoothSchedule(scaled) : undefined
        this.scheduledWeight = scheduled
        this.steps = steps
        this.cursor = 0
        this.builtAt = now
      } else if (this.builtAt + RAMP_REFRESH_MS < recheckAt) {
        // rebuilt moments ago: keep walking the old cycle (picks skip what is not usable), look again soon
        recheckAt = this.builtAt + RAMP_REFRESH_MS
      }
    }
    // during a ramp, look again every RAMP_REFRESH_MS: the schedule follows the ramp in 10 % steps
    if (ramping && now + RAMP_REFRESH_MS < recheckAt) recheckAt = now + RAMP_REFRESH_MS
    this.useSchedule = this.schedule !== undefined && usableWeight > 0 &&
      usableWeight >= this.scheduledWeight * MIN_USABLE_SHARE
    this.recheckAt = recheckAt
    this.pool = pool
    this.version = pool.version
    this.snap = targets
  }
}

/**
 * One cycle of nginx's smooth WRR sequence over `weights` (indices; weight-0 entries never appear),
 * or undefined when the weights are not integers at a scale ≤ 1000 or the cycle is too long.
 *
 * Targets of equal weight move in lockstep and are chosen in index order, so the simulation
 * runs per distinct weight (O(cycle × distinct weights)) and still reproduces nginx's
 * sequence, tie-break (lowest index) included.
 */
export function smoothSchedule (weights: ArrayLike<number>): Int32Array | undefined {
  const n = weights.length
  const ints = toIntegers(weights)
  if (ints === undefined) return undefined
  let g = 0
  for (let i = 0; i < n; i++) g = gcd(g, ints[i])
  if (g === 0) return undefined
  let total = 0
  const byWeight = new Map<number, number[]>()
  for (let i = 0; i < n; i++) {
    const w = ints[i] / g
    if (w === 0) continue
    total += w
    const members = byWeight.get(w)
    if (members === undefined) byWeight.set(w, [i])
    else members.push(i)
  }
  const groups = [...byWeight]
  const G = groups.length
  if (total > MAX_SCHEDULE || total * G > BUILD_BUDGET) return undefined

  const gw = new Float64Array(G)
  const gc = new Float64Array(G) // current_weight of the group's not-yet-chosen members
  const ptr = new Int32Array(G) // next member to choose; members before it sit at gc - total
  const members: number[][] = []
  for (let k = 0; k < G; k++) {
    gw[k] = groups[k][0]
    members.push(groups[k][1])
  }
  const out = new Int32Array(total)
  for (let step = 0; step < total; step++) {
    let best = -1
    let bestCur = 0
    let bestIdx = 0
    for (let k = 0; k < G; k++) {
      const c = gc[k] + gw[k]
      gc[k] = c
      const idx = members[k][ptr[k]]
      if (best < 0 || c > bestCur || (c === bestCur && idx < bestIdx)) {
        best = k
        bestCur = c
        bestIdx = idx
      }
    }
    out[step] = bestIdx
    if (++ptr[best] === members[best].length) {
      ptr[best] = 0
      gc[best] -= total
    }
  }
  return out
}

function toIntegers (weights: ArrayLike<number>): number[] | undefined {
  for (let scale = 1; scale <= 1000; scale *= 10) {
    const out: number[] = []
    let ok = true
    for (let i = 0; i < weights.length && ok; i++) {
      const x = weights[i] * scale
      const r = Math.round(x)
      if (Math.abs(x - r) > 1e-9 || r > Number.MAX_SAFE_INTEGER) ok = false
      else out.push(r)
    }
    if (ok) return out
  }
  return undefined
}

function gcd (a: number, b: number): number {
  while (b !== 0) {
    const t = a % b
    a = b
    b = t
  }
  return a
}
