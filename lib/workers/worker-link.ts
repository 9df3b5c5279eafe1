// A worker's end of the node: its slot, whether it runs the node's active probes, what the other workers
// share, and the answers the primary gathers from every worker (/metrics, {admin}/status).
import type { Channel, GatherWhat, PrimaryMessage, Shared, WorkerMessage } from './protocol.js'

export class WorkerLink {
  readonly slot: number
  readonly channel: Channel<WorkerMessage, PrimaryMessage>
  /** This worker runs the node's active probes (the primary names one; slot 1 until it says otherwise). */
  prober: boolean
  readonly #shared = new Set<(s: Shared, from: number) => void>()
  readonly #collect = new Map<GatherWhat, () => unknown>()
  readonly #gathers = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void, timer: NodeJS.Timeout }>()
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

  close (): void {
    this.#off()
    for (const g of this.#gathers.values()) { clearTimeout(g.timer); g.reject(new Error('closed')) }
    this.#gathers.clear()
    this.#shared.clear()
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
      case 'gathered': {
        const g = this.#gathers.get(m.id)
        if (g === undefined) return
        this.#gathers.delete(m.id)
        clearTimeout(g.timer)
        if (m.error !== undefined) g.reject(new Error(m.error))
        else g.resolve(m.data)
      }
    }
  }
}
