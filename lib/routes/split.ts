// A route split between upstreams by weight (canary, blue-green). Each side is a route config of its
// own (one object per side, so the plugins' per-route plans cache per side); the choice is made once
// per request when the table is matched: random by weight, or sticky by the route's hashOn key.
import type { HashKeyFn, HashSource } from '../proxy/hash-key.js'
import { hash32 } from '../balancers/consistent-hash.js'

export const kSplit = Symbol.for('fastify-ha-gateway.split')

export class Split {
  /** Cumulative weights: side i serves [cum[i-1], cum[i]). */
  private readonly cum: Float64Array
  private readonly total: number
  constructor (readonly sides: readonly object[], weights: readonly number[], private readonly key: HashKeyFn | undefined) {
    this.cum = new Float64Array(weights.length)
    let sum = 0
    weights.forEach((w, i) => { sum += w; this.cum[i] = sum })
    this.total = sum
  }

  /** The side config for a request. Sticky: the same key always lands on the same side (while the weights stay). */
  choose (src: HashSource): object {
    let point: number
    const k = this.key === undefined ? undefined : this.key(src)
    if (k === undefined) point = Math.random() * this.total
    else point = (hash32(k) / 4294967296) * this.total
    const cum = this.cum
    for (let i = 0; i < cum.length; i++) if (point < cum[i]) return this.sides[i]
    return this.sides[this.sides.length - 1]
  }
}

/** The config a request resolves to: a split entry picks its side; any other config is itself. */
export function resolveSplit (config: object, src: HashSource): object {
  const split = (config as { [kSplit]?: Split })[kSplit]
  return split === undefined ? config : split.choose(src)
}
