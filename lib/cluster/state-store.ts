// StateManager: small shared key/value state (JSON values, optional TTL) under `${cluster}:state:<key>`.
//
// One STRING per key, so each key has its own TTL and lands on its own slot on Redis Cluster.
// list(prefix) uses SCAN MATCH (on every master of a Redis Cluster): O(keyspace) per call, meant
// for admin views and boot, not for the request path. Without Redis it is an in-memory twin.
import { Cluster } from 'ioredis'
import type { ClusterContext } from './context.js'
import type { RedisClient } from './redis-connection.js'

export interface StateEntry<T = unknown> { key: string, value: T }

/** Keys fetched per SCAN round trip. */
const SCAN_COUNT = 200

export class StateManager {
  private readonly memory = new Map<string, { json: string, expiresAt: number }>()

  constructor (private readonly ctx: ClusterContext) {}

  async get<T = unknown> (key: string): Promise<T | undefined> {
    if (!this.ctx.link.enabled) return this.memGet<T>(key)
    const raw = await this.ctx.link.call('state get', (c) => c.get(this.ctx.keys.state(key)))
    return raw === null ? undefined : JSON.parse(raw) as T
  }

  /** Store `value` (JSON); `ttl` in ms, absent: no expiry. */
  async set (key: string, value: unknown, ttl?: number): Promise<void> {
    const json = JSON.stringify(value)
    if (json === undefined) throw new TypeError(`state value of "${key}" is not JSON`)
    if (ttl !== undefined && !(Number.isFinite(ttl) && ttl > 0)) throw new TypeError('ttl must be a positive number of ms')
    if (!this.ctx.link.enabled) {
      this.memory.set(key, { json, expiresAt: ttl === undefined ? Infinity : Date.now() + ttl })
      return
    }
    const k = this.ctx.keys.state(key)
    await this.ctx.link.call('state set', (c) => ttl === undefined ? c.set(k, json) : c.set(k, json, 'PX', Math.ceil(ttl)))
  }

  /** Resolves whether the key existed. */
  async delete (key: string): Promise<boolean> {
    if (!this.ctx.link.enabled) return this.memGet(key) !== undefined && this.memory.delete(key)
    return (await this.ctx.link.call('state delete', (c) => c.del(this.ctx.keys.state(key)))) === 1
  }

  /** Entries whose key starts with `prefix` (at most `limit`), sorted by key. */
  async list<T = unknown> (prefix = '', limit = 1000): Promise<Array<StateEntry<T>>> {
    if (!this.ctx.link.enabled) {
      const out: Array<StateEntry<T>> = []
      for (const key of [...this.memory.keys()].sort()) {
        if (!key.startsWith(prefix)) continue
        const value = this.memGet<T>(key)
        if (value !== undefined) out.push({ key, value })
        if (out.length >= limit) break
      }
      return out
    }
    const base = this.ctx.keys.statePrefix
    const keys = await this.scan(`${escapeGlob(base + prefix)}*`, limit)
    const values = await Promise.all(keys.map((k) => this.ctx.link.call('state get', (c) => c.get(k))))
    const out: Array<StateEntry<T>> = []
    keys.forEach((k, i) => {
      const raw = values[i]
      // a key that expired between SCAN and GET is simply gone
      if (raw !== null && raw !== undefined) out.push({ key: k.slice(base.length), value: JSON.parse(raw) as T })
    })
    return out.sort((a, b) => a.key < b.key ? -1 : a.key > b.key ? 1 : 0)
  }

  private async scan (match: string, limit: number): Promise<string[]> {
    const client = this.ctx.link.client!
    const nodes: RedisClient[] = client instanceof Cluster ? client.nodes('master') : [client]
    const found = new Set<string>()
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await this.ctx.link.call('state scan', () => (node as Exclude<RedisClient, Cluster>).scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT))
        cursor = next
        for (const k of keys) {
          found.add(k)
          if (found.size >= limit) return [...found]
        }
      } while (cursor !== '0')
    }
    return [...found]
  }

  private memGet<T> (key: string): T | undefined {
    const e = this.memory.get(key)
    if (e === undefined) return undefined
    if (e.expiresAt <= Date.now()) { this.memory.delete(key); return undefined }
    return JSON.parse(e.json) as T
  }
}

/** SCAN MATCH is a glob: a prefix must match itself literally. */
function escapeGlob (s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)
}
