// The primary's side of rate limiting: one MemoryStore holds every counter of the node, and each worker's
// batch of calls (ipc-store.ts) is decided in order, synchronously, in one turn. Two uses: the exact counters
// of a node without Redis, and the local fallback limiter (policy `local`) of a node whose Redis fails.
// As the fallback, it counts afresh when the node's outage begins: the first worker to report its store
// degraded clears it; a later one does not (its requests count on top of the first one's).
import { MemoryStore } from '../ratelimit/memory-store.js'
import { ruleOf, toGrantTuple, type GrantTuple, type RateLimitCall } from './protocol.js'

export class LimitHost {
  readonly store: MemoryStore
  /** Calls decided, for the status page and the bench. */
  decided = 0
  /** Workers (slots) whose Redis store is degraded now, as they reported it (outage calls). */
  readonly #degraded = new Set<number>()

  constructor (store = new MemoryStore()) {
    this.store = store
  }

  /** The answers of one batch of worker `from`, in its order: a grant per take, 0 per refund or outage call. */
  handle (calls: readonly RateLimitCall[], from = 0): Array<GrantTuple | 0> {
    const out = new Array<GrantTuple | 0>(calls.length)
    for (let i = 0; i < calls.length; i++) {
      const c = calls[i]
      if (c[0] === 0) {
        out[i] = toGrantTuple(this.store.takeSync(c[1], ruleOf(c), c[5], c[6]))
      } else if (c[0] === 1) {
        void this.store.refund(c[1], ruleOf(c), c[5], c[6])
        out[i] = 0
      } else {
        this.#outage(from, c[1] === 1)
        out[i] = 0
      }
    }
    this.decided += calls.length
    return out
  }

  /** Worker `from` is gone: it no longer holds the node's outage open. */
  left (from: number): void {
    this.#degraded.delete(from)
  }

  #outage (from: number, degraded: boolean): void {
    if (!degraded) { this.#degraded.delete(from); return }
    if (this.#degraded.size === 0) this.store.clear() // the node's outage begins: nothing left over from an earlier one
    this.#degraded.add(from)
  }

  async close (): Promise<void> {
    await this.store.close()
  }
}
