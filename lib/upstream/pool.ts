import { EventEmitter } from 'node:events'
import { GatewayError } from '../errors.js'
import { Target, type TargetSpec } from './target.js'

export type PoolChange =
  | { type: 'added', target: Target }
  | { type: 'removed', target: Target }
  | { type: 'weight', target: Target, previous: number }
  | { type: 'status', target: Target }

/**
 * An upstream pool: the targets of one upstream and a version that bumps on every
 * membership, weight or eligibility change, so balancers rebuild derived tables
 * (rings, schedules) only when it moves, never per request.
 *
 * Removal swaps in a new array (copy-on-write) so a pick in progress keeps a
 * consistent view, and a removed target keeps counting its in-flight requests
 * until they end: nothing in flight is dropped.
 */
export class UpstreamPool extends EventEmitter {
  readonly name: string
  private _targets: Target[] = []
  private readonly byId = new Map<string, Target>()
  /** Bumps on any change that can alter a balancer's derived state. */
  version = 0

  constructor (name: string, targets: TargetSpec[] = []) {
    super()
    this.name = name
    for (const spec of targets) this.add(spec)
  }

  /** The current targets. Treat as read-only: the array is replaced, never mutated, on change. */
  get targets (): readonly Target[] { return this._targets }
  get size (): number { return this._targets.length }

  get (id: string): Target | undefined { return this.byId.get(id) }

  add (spec: TargetSpec | Target): Target {
    const target = spec instanceof Target ? spec : new Target(spec)
    if (this.byId.has(target.id)) throw new GatewayError('TARGET_EXISTS', target.id)
    const next = this._targets.slice()
    target.index = next.length
    target.setOwner(this)
    next.push(target)
    this.byId.set(target.id, target)
    this._targets = next
    this.changed({ type: 'added', target })
    return target
  }

  remove (id: string): Target {
    const target = this.byId.get(id)
    if (target === undefined) throw new GatewayError('TARGET_NOT_FOUND', id)
    const next = this._targets.filter((t) => t !== target)
    for (let i = 0; i < next.length; i++) next[i].index = i
    target.index = -1
    target.setOwner(undefined)
    this.byId.delete(id)
    this._targets = next
    this.changed({ type: 'removed', target })
    return target
  }

  setWeight (id: string, weight: number): Target {
    const target = this.byId.get(id)
    if (target === undefined) throw new GatewayError('TARGET_NOT_FOUND', id)
    const previous = target.weight
    target.weight = weight
    if (previous !== weight) this.changed({ type: 'weight', target, previous })
    return target
  }

  /**
   * Tell the pool that a target's eligibility inputs changed (status, circuit,
   * ejection, slow start). Health and failover call this after they mutate a target.
   */
  touch (target: Target): void {
    this.changed({ type: 'status', target })
  }

  /**
   * Replace the membership with `specs`: keeps Target objects (and their live
   * state) whose id and url are unchanged, updating their weight and metadata.
   */
  reconcile (specs: TargetSpec[]): void {
    const wanted = new Set(specs.map((s) => s.id))
    for (const t of this._targets) {
      if (!wanted.has(t.id)) this.remove(t.id)
    }
    for (const spec of specs) {
      const existing = this.byId.get(spec.id)
      if (existing !== undefined && existing.url !== spec.url) this.remove(spec.id)
      const current = this.byId.get(spec.id)
      if (current === undefined) {
        this.add(spec)
      } else {
        current.setMetadata(spec.metadata)
        this.setWeight(spec.id, spec.weight ?? 1)
      }
    }
  }

  private changed (change: PoolChange): void {
    this.version++
    this.emit('change', change)
  }

  toJSON (now = Date.now()): Array<Record<string, unknown>> {
    return this._targets.map((t) => t.toJSON(now))
  }
}
