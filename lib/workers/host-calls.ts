// The questions of the workers that only the primary answers (protocol.ts HostCall), each decided in one
// turn on the node's one copy of what it names; the supervisor only carries the messages.
import type { ConfigDoc } from '../cluster/config-store.js'
import { ConfigHost } from './config-host.js'
import type { HostCall } from './protocol.js'

export interface HostAnswer {
  value?: unknown
  error?: string
  /** A config document the primary accepted: every other worker that listens applies it. */
  push?: ConfigDoc
}

export class HostCalls {
  /** The node's config document without Redis (made when a worker first asks; with Redis none ever does). */
  #config: ConfigHost | undefined

  /** The config document the node runs, for a worker that starts listening. */
  get config (): ConfigDoc | undefined { return this.#config?.current }

  handle (call: HostCall): HostAnswer {
    switch (call.op) {
      case 'config.seed':
        return { value: (this.#config ??= new ConfigHost()).seed(call.config, call.version) }
      case 'config.get':
        return { value: this.#config?.current }
      case 'config.put': {
        const a = (this.#config ??= new ConfigHost()).put(call.config, call.expected)
        return a.ok ? { value: a, push: a.doc } : { value: a }
      }
      default:
        return { error: `unknown call ${String((call as { op?: unknown }).op)}` }
    }
  }
}
