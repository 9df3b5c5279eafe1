// DistributedCache: a local LRU with TTL in front of Redis, versioned entries, invalidation by pub/sub.
//
// Redis: one HASH per entry, `${cluster}:cache:{<sha1 of the key>}` = { v: version, d: JSON }, PX ttl.
// Every set/delete runs one script that bumps the version and PUBLISHes `{ k, v }` on
// `${cluster}:cache:inv`. Version = max(previous + 1, Redis time in µs): a per-key counter that
// never goes back, even after the entry expired and was set again.
// The rule: each node keeps the highest version it has been told about per key (by a read,
// its own write or an invalidation) and never serves a lower one; a local entry below it is a miss.
// The cache is best effort: get() and set() never reject; with Redis down, get() serves only
// local entries and set() stores nothing (resolves undefined). Missed invalidations (subscriber
// down) are bounded by `localTtl`, and every local value is dropped when the subscriber reconnects.
import { createHash } from 'node:crypto'
import type { ClusterContext } from './context.js'
import { LruMap } from './lru.js'
import { defineScript } from './script.js'

export interface CacheOptions {
  /** Entries (values and remembered versions) kept locally. Default 1000. */
  maxEntries?: number
  /** ms a value is served locally before Redis is asked again. Default 60 s. */
  localTtl?: number
}

export interface CacheHit<T> { value: T, version: number }

interface Local {
  /** version of `json`; 0 when no value is held */
  version: number
  /** highest version this node has been told about */
  seen: number
  json: string | undefined
  /** epoch-ms */
  expiresAt: number
}

// KEYS[1] entry hash. ARGV[1] JSON ('' deletes), ARGV[2] ttl ms, ARGV[3] channel, ARGV[4] the caller's key.
// Returns the new version as a string (Lua's tostring would print a 16-digit number in e-notation).
const writeScript = defineScript('fhgCacheWrite', 1, `
local t = redis.call('TIME')
local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
local v = (tonumber(redis.call('HGET', KEYS[1], 'v')) or 0) + 1
if v < floor then v = floor end
local vs = string.format('%.0f', v)
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', vs, 'd', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('PUBLISH', ARGV[3], cjson.encode({ k = ARGV[4], v = vs }))
return vs
`)

// KEYS[1] entry hash. Returns { version, JSON, pttl } or nil, read atomically.
const readScript = defineScript('fhgCacheRead', 1, `
local r = redis.call('HMGET', KEYS[1], 'v', 'd')
if not r[1] or not r[2] then return false end
return { r[1], r[2], redis.call('PTTL', KEYS[1]) }
`)

export class DistributedCache {
  private readonly local: LruMap<Local>
  private readonly localTtl: number
  private memoryVersion = 0
  private unsubscribe: (() => void) | undefined
  private unResubscribed: (() => void) | undefined

  constructor (private readonly ctx: ClusterContext, o: CacheOptions = {}) {
    this.local = new LruMap(o.maxEntries ?? 1000)
    this.localTtl = o.localTtl ?? 60_000
  }

  /** Listen for invalidations (without it the cache still works, bounded by localTtl). */
  start (): void {
    if (this.unsubscribe !== undefined || !this.ctx.link.enabled) return
    this.unsubscribe = this.ctx.pubsub.subscribe(this.ctx.keys.cacheInvalidations, (msg) => this.onInvalidation(msg))
    // invalidations may have been lost while the subscriber was down
    this.unResubscribed = this.ctx.pubsub.onResubscribed(() => this.dropValues())
  }

  async get<T = unknown> (key: string): Promise<T | undefined> {
    return (await this.getEntry<T>(key))?.value
  }

  async getEntry<T = unknown> (key: string): Promise<CacheHit<T> | undefined> {
    const now = Date.now()
    const rec = this.local.get(key)
    if (rec !== undefined && rec.json !== undefined && rec.expiresAt > now && rec.version >= rec.seen) {
      return { value: JSON.parse(rec.json) as T, version: rec.version }
    }
    if (!this.ctx.link.enabled) return undefined
    let r: [string, string, number] | null
    try {
      r = await this.ctx.link.call('cache get', (c) => readScript(c, [this.entryKey(key)], [])) as [string, string, number] | null
    } catch {
      return undefined // a miss: the caller computes the value
    }
    if (r === null) return undefined
    const version = Number(r[0])
    const pttl = Number(r[2])
    // an invalidation may have arrived while we read: re-read what we know now
    const seen = this.local.peek(key)?.seen ?? 0
    if (version < seen) return undefined
    const ttl = pttl > 0 ? Math.min(pttl, this.localTtl) : this.localTtl
    this.local.set(key, { version, seen: version, json: r[1], expiresAt: Date.now() + ttl })
    return { value: JSON.parse(r[1]) as T, version }
  }

  /** Store `value` (JSON) for `ttl` ms; resolves its version, or undefined when Redis could not store it. */
  async set (key: string, value: unknown, ttl: number): Promise<number | undefined> {
    if (!(Number.isFinite(ttl) && ttl > 0)) throw new TypeError('ttl must be a positive number of ms')
    const json = JSON.stringify(value)
    if (json === undefined) throw new TypeError(`cache value of "${key}" is not JSON`)
    const version = await this.write(key, json, ttl)
    if (version === undefined) return undefined
    const localTtl = this.ctx.link.enabled ? Math.min(ttl, this.localTtl) : ttl
    this.remember(key, version, json, Date.now() + localTtl)
    return version
  }

  /** Remove `key` everywhere; resolves the version of the removal, or undefined when Redis was unavailable. */
  async delete (key: string): Promise<number | undefined> {
    const version = await this.write(key, '', 1)
    if (version !== undefined) this.remember(key, version, undefined, 0)
    return version
  }

  /** The highest version of `key` this node has been told about (0: none). */
  seenVersion (key: string): number { return this.local.peek(key)?.seen ?? 0 }

  async close (): Promise<void> {
    this.unsubscribe?.()
    this.unResubscribed?.()
    this.unsubscribe = undefined
    this.local.clear()
  }

  private async write (key: string, json: string, ttl: number): Promise<number | undefined> {
    if (!this.ctx.link.enabled) return ++this.memoryVersion
    try {
      const vs = await this.ctx.link.call('cache set', (c) =>
        writeScript(c, [this.entryKey(key)], [json, Math.ceil(ttl), this.ctx.keys.cacheInvalidations, key]))
      return Number(vs)
    } catch {
      return undefined
    }
  }

  /** Record `version` for `key`; a value is kept only if it is the newest known. */
  private remember (key: string, version: number, json: string | undefined, expiresAt: number): void {
    const rec = this.local.peek(key)
    const seen = Math.max(rec?.seen ?? 0, version)
    if (version < seen) return
    this.local.set(key, { version: json === undefined ? 0 : version, seen, json, expiresAt })
  }

  private onInvalidation (raw: string): void {
    let msg: { k?: unknown, v?: unknown }
    try { msg = JSON.parse(raw) as typeof msg } catch { return }
    const v = Number(msg.v)
    if (typeof msg.k !== 'string' || !Number.isFinite(v)) return
    const rec = this.local.peek(msg.k)
    if (rec === undefined) {
      this.local.set(msg.k, { version: 0, seen: v, json: undefined, expiresAt: 0 })
      return
    }
    if (v > rec.seen) rec.seen = v
    // an older local value is now a miss: free it
    if (rec.version < rec.seen) { rec.json = undefined; rec.version = 0 }
  }

  private dropValues (): void {
    for (const rec of this.local.values()) { rec.json = undefined; rec.version = 0 }
  }

  private entryKey (key: string): string {
    // a digest: no client string reaches a key name, and the `{tag}` keeps each entry in its own slot
    return this.ctx.keys.cacheEntry(createHash('sha1').update(key).digest('base64url'))
  }
}
