// A worker's config store when the node has no Redis: the primary holds the node's one document
// (config-host.ts) and judges every write, compare-and-set, so a node of N workers accepts a version once,
// as one process does. put() asks the primary and applies what it accepted; every other worker gets the
// accepted document pushed and applies it; a worker that starts fetches the primary's document at boot
// (the runtime's boot: seed if empty, then sync), and the primary pushes it again once the worker listens.
// No snapshot: without Redis the node's own file is its boot config, as with one process.
import { ConfigConflictError, type ConfigDoc, type ConfigStore, type ConfigWatcher } from '../cluster/config-store.js'
import type { ConfigPutAnswer } from './protocol.js'
import type { WorkerLink } from './worker-link.js'

export interface IpcConfigStoreOptions {
  /** A watcher refused a document (the runtime logs it). */
  onError?: (err: Error) => void
  /** ms a question waits for the primary (default 5000). */
  timeout?: number
}

export class IpcConfigStore<T = unknown> implements ConfigStore<T> {
  #current: ConfigDoc<T> | undefined
  readonly #watchers = new Set<ConfigWatcher<T>>()
  /** Applies run one at a time, in the order the primary accepted them. */
  #chain: Promise<void> = Promise.resolve()
  #started = false
  #closed = false
  readonly #off: () => void
  readonly #link: WorkerLink
  readonly #o: IpcConfigStoreOptions

  constructor (link: WorkerLink, o: IpcConfigStoreOptions = {}) {
    this.#link = link
    this.#o = o
    // pushes before start() are dropped: the boot's sync fetches the primary's latest document
    this.#off = link.onConfig((doc) => { if (this.#started && !this.#closed) this.#enqueue(async () => { await this.#applyIfNewer(doc as ConfigDoc<T>) }).catch(noop) })
  }

  get current (): ConfigDoc<T> | undefined { return this.#current }
  setCurrent (doc: ConfigDoc<T>): void { this.#current = doc }

  /** From now on, documents the primary pushes are applied. */
  start (): void { this.#started = true }

  watch (fn: ConfigWatcher<T>): () => void {
    this.#watchers.add(fn)
    return () => { this.#watchers.delete(fn) }
  }

  /** The primary's document (undefined: none yet); rejects when the primary does not answer. */
  async get (): Promise<ConfigDoc<T> | undefined> {
    return await this.#ask({ op: 'config.get' }) as ConfigDoc<T> | undefined
  }

  /** Compare-and-set at the primary; the accepted document is applied here before this resolves. Stale: ConfigConflictError. */
  async put (config: T, expectedVersion: number): Promise<ConfigDoc<T>> {
    if (!Number.isInteger(expectedVersion) || expectedVersion < 0) throw new TypeError('expectedVersion must be an integer >= 0')
    const a = await this.#ask({ op: 'config.put', config, expected: expectedVersion }) as ConfigPutAnswer
    if (!a.ok) throw new ConfigConflictError(a.current)
    const doc = a.doc as ConfigDoc<T>
    await this.#enqueue(async () => { await this.#applyIfNewer(doc) })
    return doc
  }

  /** Seed the primary's document if it holds none (the first worker's file, as version `version`). */
  async seedIfEmpty (config: T, version = 1): Promise<boolean> {
    const a = await this.#ask({ op: 'config.seed', config, version }) as { seeded: boolean }
    return a.seeded
  }

  /** Fetch the primary's document and apply it if newer; a primary that does not answer is left to its next push. */
  async sync (): Promise<void> {
    await this.#enqueue(async () => {
      const doc = await this.get().catch(() => undefined)
      if (doc !== undefined && !this.#closed) await this.#applyIfNewer(doc)
    })
  }

  async loadSnapshot (): Promise<undefined> { return undefined }

  async close (): Promise<void> {
    this.#closed = true
    this.#off()
    await this.#chain
  }

  async #ask (call: Parameters<WorkerLink['ask']>[0]): Promise<unknown> {
    return await this.#link.ask(call, this.#o.timeout)
  }

  /** A document older than (or the same as) the one applied is skipped: a push may overtake the answer to this worker's own put. */
  async #applyIfNewer (doc: ConfigDoc<T>): Promise<void> {
    const previous = this.#current
    if (previous !== undefined && (doc.version < previous.version || (doc.version === previous.version && doc.rev === previous.rev))) return
    this.#current = doc
    for (const fn of [...this.#watchers]) {
      try {
        await fn(doc, previous)
      } catch (err) {
        this.#o.onError?.(err as Error)
      }
    }
  }

  #enqueue (fn: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(fn)
    this.#chain = next.catch(noop)
    return next
  }
}

function noop (): void {}
