// A worker's rate-limit store when the node has no Redis: the primary holds the counters (limit-host.ts).
//
// Exact rules: every decision is one call to the primary, so limits stay exact across workers. The calls
// of one event-loop turn go as one IPC message (one `setImmediate` flush), and come back as one answer.
// Lease rules: a LeaseStore with this store as its source (lease-store.ts, with its stated bound:
// workers × slice over the exact limit); it takes slices from the primary and spends them locally.
// A primary that does not answer within `timeout` rejects the batch: the limiter's onStoreError applies.
// `local`: the node's local fallback limiter while Redis fails (policy `local`): the same calls, decided on the
// primary's fallback counters, so the node admits its share once across its workers; clear() and recovered()
// tell the primary when this worker's Redis store degrades and recovers (it counts afresh for the first one).
import { RateLimitStoreError } from '../ratelimit/deadline.js'
import { LeaseStore } from '../ratelimit/lease-store.js'
import { toDecision, type Grant, type GrantSource } from '../ratelimit/grant.js'
import type { Decision, LimitRule, RateLimitStore } from '../ratelimit/types.js'
import { fromGrantTuple, outageCall, refundCall, takeCall, type Channel, type GrantTuple, type PrimaryMessage, type RateLimitCall, type WorkerMessage } from './protocol.js'

export interface IpcStoreOptions {
  /** ms a batch waits for the primary's answer before it fails (default 5000: the primary is on this host, a stall of the host is no outage). */
  timeout?: number
  /** The node's local fallback limiter (policy `local`), not its exact store. Default false. */
  local?: boolean
}

interface Waiter {
  resolve: (g: GrantTuple | 0) => void
}

interface Batch {
  readonly waiters: Waiter[]
  readonly timer: NodeJS.Timeout
  readonly reject: (err: Error) => void
}

export class IpcStore implements RateLimitStore, GrantSource {
  readonly timeout: number
  readonly #local: boolean
  readonly #channel: Channel<WorkerMessage, PrimaryMessage>
  readonly #off: () => void
  /** The calls of this turn, and who waits on them. */
  #calls: RateLimitCall[] = []
  #waiters: Waiter[] = []
  #rejects: Array<(err: Error) => void> = []
  #flush: NodeJS.Immediate | undefined
  #nextId = 1
  readonly #sent = new Map<number, Batch>()
  #closed = false
  /** Batches sent and calls in them, for the bench and tests. */
  batches = 0
  calls = 0

  constructor (channel: Channel<WorkerMessage, PrimaryMessage>, opts: IpcStoreOptions = {}) {
    this.#channel = channel
    this.timeout = opts.timeout ?? 5000
    this.#local = opts.local === true
    this.#off = channel.onMessage((m) => { if (m.t === 'rl') this.#answer(m.id, m.grants) })
  }

  consume (key: string, rule: LimitRule, cost: number): Promise<Decision> {
    return this.take(key, rule, cost, cost).then((g) => toDecision(g, rule.limit))
  }

  take (key: string, rule: LimitRule, want: number, min: number): Promise<Grant> {
    return this.#call(takeCall(key, rule, want, min)).then((t) => {
      if (t === 0) throw new RateLimitStoreError('failed', 'the primary answered a take with nothing')
      return fromGrantTuple(t)
    })
  }

  refund (key: string, rule: LimitRule, units: number, epoch: number): Promise<void> {
    return this.#call(refundCall(key, rule, units, epoch)).then(() => {})
  }

  /** As the local fallback: this worker's Redis store degraded (the guard clears its local limiter then). */
  clear (): void {
    if (this.#local) this.#call(outageCall(true)).catch(noop)
  }

  /** As the local fallback: this worker's Redis store answers again. */
  recovered (): void {
    if (this.#local) this.#call(outageCall(false)).catch(noop)
  }

  async close (): Promise<void> {
    this.#closed = true
    this.#off()
    if (this.#flush !== undefined) clearImmediate(this.#flush)
    this.#flush = undefined
    const err = new RateLimitStoreError('failed', 'store closed')
    for (const r of this.#rejects) r(err)
    for (const b of this.#sent.values()) { clearTimeout(b.timer); b.reject(err) }
    this.#sent.clear()
    this.#calls = []
    this.#waiters = []
    this.#rejects = []
  }

  #call (c: RateLimitCall): Promise<GrantTuple | 0> {
    if (this.#closed) return Promise.reject(new RateLimitStoreError('failed', 'store closed'))
    return new Promise((resolve, reject) => {
      this.#calls.push(c)
      this.#waiters.push({ resolve })
      this.#rejects.push(reject)
      this.#flush ??= setImmediate(() => { this.#send() })
    })
  }

  /** One message for every call of the turn. */
  #send (): void {
    this.#flush = undefined
    const calls = this.#calls
    const waiters = this.#waiters
    const rejects = this.#rejects
    this.#calls = []
    this.#waiters = []
    this.#rejects = []
    if (calls.length === 0) return
    const id = this.#nextId++
    const reject = (err: Error): void => { for (const r of rejects) r(err) }
    const timer = setTimeout(() => {
      this.#sent.delete(id)
      reject(new RateLimitStoreError('timeout', String(this.timeout)))
    }, this.timeout)
    timer.unref()
    this.#sent.set(id, { waiters, timer, reject })
    this.batches++
    this.calls += calls.length
    try {
      this.#channel.send(this.#local ? { fhg: 1, t: 'rl', id, calls, local: 1 } : { fhg: 1, t: 'rl', id, calls })
    } catch (err) {
      clearTimeout(timer)
      this.#sent.delete(id)
      reject(new RateLimitStoreError('failed', (err as Error).message))
    }
  }

  #answer (id: number, grants: Array<GrantTuple | 0>): void {
    const b = this.#sent.get(id)
    if (b === undefined) return // timed out meanwhile: its requests were decided by the outage policy
    this.#sent.delete(id)
    clearTimeout(b.timer)
    for (let i = 0; i < b.waiters.length; i++) b.waiters[i].resolve(grants[i] ?? 0)
  }
}

/** A worker's stores without Redis: exact decisions by the primary, lease rules as slices of the primary's budget. */
export function createWorkerStores (channel: Channel<WorkerMessage, PrimaryMessage>, opts: IpcStoreOptions = {}): { exact: IpcStore, lease: LeaseStore, close: () => Promise<void> } {
  const exact = new IpcStore(channel, opts)
  // the same prefetch as over Redis: a hot key's next slice comes while a quarter of it is left
  const lease = new LeaseStore({ source: exact, prefetch: 0.25 })
  return {
    exact,
    lease,
    async close () {
      await lease.close() // gives unused units back through exact first
      await exact.close()
    },
  }
}

function noop (): void {}
