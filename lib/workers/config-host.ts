// The primary's side of the shared config without Redis: the node's one config document. Every worker's
// PUT is judged here, compare-and-set, as the single-process memory store judges it (config-store.ts):
// a write must name the version it replaces; the winner becomes version + 1, a stale one is refused
// with the version held. The supervisor pushes each accepted document to every worker.
import { randomBytes } from 'node:crypto'
import type { ConfigDoc } from '../cluster/config-store.js'
import type { ConfigPutAnswer } from './protocol.js'

export class ConfigHost {
  #doc: ConfigDoc | undefined

  /** The document the node runs (undefined until the first worker seeds it). */
  get current (): ConfigDoc | undefined { return this.#doc }

  /** The first worker's file seeds the node's document (SET NX semantics); every seed answers what is held. */
  seed (config: unknown, version: number): { seeded: boolean, doc: ConfigDoc } {
    if (this.#doc !== undefined) return { seeded: false, doc: this.#doc }
    this.#doc = { version, rev: newRev(), config, updatedAt: Date.now() }
    return { seeded: true, doc: this.#doc }
  }

  /** Compare-and-set: `config` becomes expected + 1 if the node still holds `expected` (0: nothing). */
  put (config: unknown, expected: number): ConfigPutAnswer {
    const cur = this.#doc?.version ?? 0
    if (!Number.isInteger(expected) || expected !== cur) return { ok: false, current: cur }
    this.#doc = { version: cur + 1, rev: newRev(), config, updatedAt: Date.now() }
    return { ok: true, doc: this.#doc }
  }
}

function newRev (): string { return randomBytes(8).toString('hex') }
