// The primary's side of rate limiting without Redis: one MemoryStore holds every counter of the node,
// and each worker's batch of calls (ipc-store.ts) is decided in order, synchronously, in one turn.
import { MemoryStore } from '../ratelimit/memory-store.js'
import { ruleOf, toGrantTuple, type GrantTuple, type RateLimitCall } from './protocol.js'

export class LimitHost {
  readonly store: MemoryStore
  /** Calls decided, for the status page and the bench. */
  decided = 0

  constructor (store = new MemoryStore()) {
    this.store = store
  }

  /** The answers of one batch, in its order: a grant per take, 0 per refund. */
  handle (calls: readonly RateLimitCall[]): Array<GrantTuple | 0> {
    const out = new Array<GrantTuple | 0>(calls.length)
    for (let i = 0; i < calls.length; i++) {
      const c = calls[i]
      if (c[0] === 0) {
        out[i] = toGrantTuple(this.store.takeSync(c[1], ruleOf(c), c[5], c[6]))
      } else {
        void this.store.refund(c[1], ruleOf(c), c[5], c[6])
        out[i] = 0
      }
    }
    this.decided += calls.length
    return out
  }

  async close (): Promise<void> {
    await this.store.close()
  }
}
