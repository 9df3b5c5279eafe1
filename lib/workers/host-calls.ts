// The questions of the workers that only the primary answers (protocol.ts HostCall), each decided on the
// node's one copy of what it names; the supervisor only carries the messages.
import type { ConfigDoc } from '../cluster/config-store.js'
import { MemoryAlertStore } from '../monitor/alert-store.js'
import { ConfigHost } from './config-host.js'
import type { HostCall } from './protocol.js'

export interface HostAnswer {
  value?: unknown
  error?: string
  /** A config document the primary accepted: every other worker that listens applies it. */
  push?: ConfigDoc
}

/** Who asks: its slot, and whether the primary names it the node's evaluator (the prober role). */
export interface Asker { slot: number, evaluator: boolean }

export class HostCalls {
  /** The node's config document without Redis (made when a worker first asks; with Redis none ever does). */
  #config: ConfigHost | undefined
  /** The node's alert states without Redis (made when the evaluator first asks). */
  #alerts: MemoryAlertStore | undefined

  /** The config document the node runs, for a worker that starts listening. */
  get config (): ConfigDoc | undefined { return this.#config?.current }

  /** Config calls are answered in the turn they arrive (the order of accepted versions is the order of answers); alert calls may wait. */
  handle (call: HostCall, from: Asker): HostAnswer | Promise<HostAnswer> {
    switch (call.op) {
      case 'config.seed':
        return { value: (this.#config ??= new ConfigHost()).seed(call.config, call.version) }
      case 'config.get':
        return { value: this.#config?.current }
      case 'config.put': {
        const a = (this.#config ??= new ConfigHost()).put(call.config, call.expected)
        return a.ok ? { value: a, push: a.doc } : { value: a }
      }
      case 'alerts.load':
        return this.#alertStore().load().then((m) => ({ value: [...m] }))
      case 'alerts.recent':
        return this.#alertStore().recent().then((value) => ({ value }))
      case 'alerts.commit':
        // as the Redis store's commit checks the lease: a worker that is no longer the evaluator sends nothing
        if (!from.evaluator) return { value: false }
        return this.#alertStore().commit('', 0, new Map(call.states), call.removed, call.alerts).then((value) => ({ value }))
      default:
        return { error: `unknown call ${String((call as { op?: unknown }).op)}` }
    }
  }

  #alertStore (): MemoryAlertStore {
    return (this.#alerts ??= new MemoryAlertStore())
  }
}
