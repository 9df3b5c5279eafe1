// A worker's end of the node: its slot, whether it runs the node's active probes, what the other workers
// share, the answers the primary gathers from every worker (/metrics, {admin}/status), and the questions
// only the primary answers (the node's config document without Redis).
import type { ConfigDoc } from '../cluster/config-store.js'
import { GatewayError } from '../errors.js'
import type { Channel, GatherWhat, HostCall, PrimaryMessage, Shared, WorkerMessage } from './protocol.js'

interface Waiting { resolve: (v: unknown) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }

export class WorkerLink {
  readonly slot: number
  readonly channel: Channel<WorkerMessage, PrimaryMessage>
  /** This worker runs the node's active probes (the primary names one; slot 1 until it says otherwise). */
  prober: boolean
  readonly #shared = new Set<(s: Shared, from: number) => void>()
  readonly #collect = new Map<GatherWhat, () => unknown>()
  readonly #gathers = new Map<number, Waiting>()
  readonly #asks = new Map<number, Waiting>()
  readonly #config = new Set<(doc: ConfigDoc) => void>()
  readonly #off: () => void
  #nextId = 1

  constructor (channel: Channel<WorkerMessage, PrimaryMessage>, slot: number) {
    this.channel = channel
    this.slot = slot
    this.prober = slot === 1
    this.#off = channel.onMessage((m) => { this.#receive(m) })
  }

  /** This worker listens: the primary counts it in (roles, gathers, shares). */
  ready (): void {
    this.channel.send({ fhg: 1, t: 'ready' })
  }

  /** Tell every other worker of the node. */
  share (shared: Shared): void {
    this.channel.send({ fhg: 1, t: 'share', shared })
  }

  onShared (fn: (s: Shared, from: number) => void): () => void {
    this.#shared.add(fn)
    return () => { this.#shared.delete(fn) }
  }

  /** What this worker answers when the primary gathers `what`. */
  onCollect (what: GatherWhat, fn: () => unknown): void {
    this.#collect.set(what, fn)
  }

  /** The node's answer: the primary gathers every worker's part and assembles it. */
  async gather (what: GatherWhat, timeout = 3000): Promise<unknown> {
    const id = this.#nextId++
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#gathers.delete(id)
        reject(new Error(`the primary did not answer ${what} within ${timeout} ms`))
      }, timeout)
      timer.unref()
      this.#gathers.set(id, { resolve, reject, timer })
      this.channel.send({ fhg: 1, t: 'gather', id, what })
    })
  }

  /**
   * Ask the primary (it holds the node's one copy of what `call` names); rejects with FHG_ERR_PRIMARY_UNAVAILABLE
   * when no answer comes within `timeout` ms (the primary is on this host: a stall of the host is no outage).
   */
  async ask (call: HostCall, timeout = 5000): Promise<unknown> {
    const id = this.#nextId++
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#asks.delete(id)
        reject(new GatewayError('PRIMARY_UNAVAILABLE', `${call.op} within ${timeout} ms`))
      }, timeout)
      timer.unref()
      this.#asks.set(id, { resolve, reject, timer })
      try {
        this.channel.send({ fhg: 1, t: 'call', id, call })
      } catch (err) {
        clearTimeout(timer)
        this.#asks.delete(id)
        reject(new GatewayError('PRIMARY_UNAVAILABLE', (err as Error).message))
      }
    })
  }

  /** The node's config documents the primary pushes (another worker's accepted PUT, or the current one once this worker listens). */
  onConfig (fn: (doc: ConfigDoc) => void): () => void {
    this.#config.add(fn)
    return () => { this.#config.delete(fn) }
  }

  close (): void {
    this.#off()
    for (const w of [...this.#gathers.values(), ...this.#asks.values()]) { clearTimeout(w.timer); w.reject(new Error('closed')) }
    this.#gathers.clear()
    this.#asks.clear()
    this.#shared.clear()
    this.#config.clear()
  }

  #receive (m: PrimaryMessage): void {
    switch (m.t) {
      case 'role':
        this.prober = m.prober
        return
      case 'share':
        for (const fn of this.#shared) {
          try { fn(m.shared, m.from) } catch (err) { process.emitWarning(err as Error, { code: 'FHG_WORKER_SHARE' }) }
        }
        return
      case 'collect': {
        const fn = this.#collect.get(m.what)
        Promise.resolve(fn === undefined ? null : fn()).then((data) => {
          this.channel.send({ fhg: 1, t: 'report', id: m.id, data })
        }, () => { this.channel.send({ fhg: 1, t: 'report', id: m.id, data: null }) })
        return
      }
      case 'gathered':
        settle(this.#gathers, m.id, m.data, m.error)
        return
      case 'answer':
        settle(this.#asks, m.id, m.value, m.error)
        return
      case 'config':
        for (const fn of this.#config) {
          try { fn(m.doc) } catch (err) { process.emitWarning(err as Error, { code: 'FHG_WORKER_CONFIG' }) }
        }
    }
  }
}

function settle (waiting: Map<number, Waiting>, id: number, value: unknown, error: string | undefined): void {
  const w = waiting.get(id)
  if (w === undefined) return // timed out meanwhile
  waiting.delete(id)
  clearTimeout(w.timer)
  if (error !== undefined) w.reject(new Error(error))
  else w.resolve(value)
}
