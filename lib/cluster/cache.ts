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
//
// derive({ namespace }) makes a cache of its own bounds on the same connection: its keys are hashed
// with the namespace and its invalidations go on `${cluster}:cache:inv:<namespace>`, so it neither
// sees nor disturbs the entries of the root cache (the response cache is one). With `redisMaxBytes`
// its Redis keys are bounded too: see cache-bounds.ts (one slot, an index, eviction in the write script).
import { createHash } from 'node:crypto'
import { boundedKeys, boundedWriteScript, ENTRY_OVERHEAD, groupId, type BoundedKeys } from './cache-bounds.js'
import type { ClusterContext } from './context.js'
import { assertKeyPart } from './keys.js'
import { withDeadline } from './redis-link.js'
import { defineScript } from './script.js'
import { SizedLru } from './sized-lru.js'

export interface CacheOptions {
  /** Entries (values and remembered versions) kept locally. Default 1000. */
  maxEntries?: number
  /** Local bytes (the JSON length of the values held) at most; the least recently used go first. Default: no bound. */
  maxBytes?: number
  /** ms a value is served locally before Redis is asked again. Default 60 s. */
  localTtl?: number
  /** ms; deadline of each Redis call of this cache when shorter than the link's. Default: the link's. */
  timeout?: number
  /**
   * Decode a stored JSON once and hand every get() of it the same value (treat it as read-only).
   * Default: a fresh JSON.parse per get(), so callers may mutate what they get.
   */
  decode?: (json: string) => unknown
}

export interface DerivedCacheOptions extends CacheOptions {
  /** Keeps keys and invalidations apart from the root cache and from other namespaces (no spaces or braces). */
  namespace: string
  /** Bytes this namespace may hold in Redis, all its keys together (see cache-bounds.ts); absent: bounded by TTLs only. */
  redisMaxBytes?: number
}

/** The group an entry counts in (a route), and the most keys the group may hold in Redis. */
export interface CacheGroup { name: string, maxEntries: number }

export interface CacheHit<T> { value: T, version: number }

interface Local {
  /** version of the value held; 0 when no value is held */
  version: number
  /** highest version this node has been told about */
  seen: number
  /** the value as stored, until decoded */
  json: string | undefined
  /** the decoded value (with a decode option) */
  decoded: unknown
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
  private readonly local: SizedLru<Local>
  private readonly localTtl: number
  private readonly timeout: number
  private readonly decode: ((json: string) => unknown) | undefined
  private readonly namespace: string
  private readonly channel: string
  /** Redis reads in flight per key: concurrent misses of one key share one read. */
  private readonly reading = new Map<string, Promise<[string, string, number] | null | undefined>>()
  private memoryVersion = 0
  private unsubscribe: (() => void) | undefined
  private unResubscribed: (() => void) | undefined
  private readonly bounds: { keys: BoundedKeys, maxBytes: number } | undefined
  private readonly groupIds = new Map<string, string>()

  constructor (private readonly ctx: ClusterContext, o: CacheOptions & { namespace?: string, redisMaxBytes?: number } = {}) {
    this.local = new SizedLru(o.maxEntries ?? 1000, o.maxBytes ?? Infinity)
    this.localTtl = o.localTtl ?? 60_000
    this.timeout = o.timeout ?? Infinity
    this.decode = o.decode
    this.namespace = o.namespace === undefined ? '' : assertKeyPart('cache namespace', o.namespace)
    this.channel = o.namespace === undefined ? ctx.keys.cacheInvalidations : `${ctx.keys.cacheInvalidations}:${this.namespace}`
    if (o.redisMaxBytes !== undefined) {
      if (o.namespace === undefined) throw new TypeError('redisMaxBytes needs a namespace')
      if (!(o.redisMaxBytes > 0)) throw new TypeError('redisMaxBytes must be a positive number')
      this.bounds = { keys: boundedKeys(ctx.keys.name, this.namespace), maxBytes: o.redisMaxBytes }
    }
  }

  /** A cache with its own namespace and bounds on this cache's connection; start() and close() it yourself. */
  derive (o: DerivedCacheOptions): DistributedCache {
    return new DistributedCache(this.ctx, o)
  }

  /** Whether values are shared through Redis (false: this node's memory only). */
  get distributed (): boolean { return this.ctx.link.enabled }

  /** True while invalidations reach this node (subscribed on a live connection); values read before are dropped when it turns true. */
  get listening (): boolean { return this.unsubscribe !== undefined && this.ctx.pubsub.isSubscribed(this.channel) }

  /** Listen for invalidations (without it the cache still works, bounded by localTtl). */
  start (): void {
    if (this.unsubscribe !== undefined || !this.ctx.link.enabled) return
    this.unsubscribe = this.ctx.pubsub.subscribe(this.channel, (msg) => this.onInvalidation(msg))
    // invalidations may have been lost while the subscriber was down
    this.unResubscribed = this.ctx.pubsub.onResubscribed(() => this.dropValues())
  }

  async get<T = unknown> (key: string): Promise<T | undefined> {
    return (await this.getEntry<T>(key))?.value
  }

  /** The local value of `key` if this node holds a fresh one of the newest known version; never asks Redis. */
  peek<T = unknown> (key: string): CacheHit<T> | undefined {
    const rec = this.local.get(key)
    return rec === undefined ? undefined : this.hit<T>(key, rec, Date.now())
  }

  async getEntry<T = unknown> (key: string): Promise<CacheHit<T> | undefined> {
    const rec = this.local.get(key)
    if (rec !== undefined) {
      const h = this.hit<T>(key, rec, Date.now())
      if (h !== undefined) return h
    }
    if (!this.ctx.link.enabled) return undefined
    let pending = this.reading.get(key)
    if (pending === undefined) {
      pending = this.read(key)
      this.reading.set(key, pending)
      void pending.finally(() => { if (this.reading.get(key) === pending) this.reading.delete(key) })
    }
    const r = await pending
    if (r === null || r === undefined) return undefined
    const version = Number(r[0])
    // an invalidation may have arrived while we read: re-read what we know now
    const now = this.local.peek(key)
    if (version < (now?.seen ?? 0)) return undefined
    if (now === undefined || now.version !== version) {
      const pttl = Number(r[2])
      const ttl = pttl > 0 ? Math.min(pttl, this.localTtl) : this.localTtl
      this.remember(key, version, r[1], Date.now() + ttl)
    }
    const held = this.local.peek(key)
    if (held !== undefined && held.version === version) return { value: this.valueOf<T>(key, held), version }
    // too big to hold locally
    return { value: (this.decode === undefined ? JSON.parse(r[1]) : this.decode(r[1])) as T, version }
  }

  /**
   * Store `value` (JSON) for `ttl` ms; resolves its version, or undefined when Redis could not (or, past
   * the namespace's bounds, would not) store it. `group` counts it against a group's maxEntries (bounded namespaces).
   */
  async set (key: string, value: unknown, ttl: number, group?: CacheGroup): Promise<number | undefined> {
    if (!(Number.isFinite(ttl) && ttl > 0)) throw new TypeError('ttl must be a positive number of ms')
    const json = JSON.stringify(value)
    if (json === undefined) throw new TypeError(`cache value of "${key}" is not JSON`)
    const version = await this.write(key, json, ttl, group)
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

  /** What this node holds: entries (values and remembered versions) and the bytes of the values. */
  stats (): { entries: number, bytes: number } { return { entries: this.local.count, bytes: this.local.size } }

  async close (): Promise<void> {
    this.unsubscribe?.()
    this.unResubscribed?.()
    this.unsubscribe = undefined
    this.unResubscribed = undefined
    this.local.clear()
  }

  private hit<T> (key: string, rec: Local, now: number): CacheHit<T> | undefined {
    if (rec.version === 0 || rec.version < rec.seen) return undefined
    if (rec.expiresAt <= now) {
      this.drop(key, rec)
      return undefined
    }
    return { value: this.valueOf<T>(key, rec), version: rec.version }
  }

  private valueOf<T> (key: string, rec: Local): T {
    if (this.decode === undefined) return JSON.parse(rec.json!) as T
    if (rec.json !== undefined) {
      rec.decoded = this.decode(rec.json)
      rec.json = undefined
    }
    return rec.decoded as T
  }

  private async read (key: string): Promise<[string, string, number] | null | undefined> {
    try {
      const call = this.ctx.link.call('cache get', (c) => readScript(c, [this.entryKey(key)], []))
      const r = await (this.timeout < this.ctx.link.timeout ? withDeadline(call, this.timeout, 'cache get') : call)
      return r as [string, string, number] | null
    } catch {
      return undefined // a miss: the caller computes the value
    }
  }

  private async write (key: string, json: string, ttl: number, group?: CacheGroup): Promise<number | undefined> {
    if (!this.ctx.link.enabled) return ++this.memoryVersion
    try {
      const b = this.bounds
      const call = b === undefined
        ? this.ctx.link.call('cache set', (c) => writeScript(c, [this.entryKey(key)], [json, Math.ceil(ttl), this.channel, key]))
        : this.ctx.link.call('cache set', (c) => this.boundedWrite(c, b, key, json, ttl, group))
      const vs = await (this.timeout < this.ctx.link.timeout ? withDeadline(call, this.timeout, 'cache set') : call)
      if (Array.isArray(vs)) {
        const version = Number(vs[0])
        if (Number(vs[1]) === 1 || json === '') return version
        // refused (bigger than the namespace may hold): nodes were told to drop the old value; so does this one
        this.remember(key, version, undefined, 0)
        return undefined
      }
      return Number(vs)
    } catch {
      return undefined
    }
  }

  private async boundedWrite (c: Parameters<typeof writeScript>[0], b: NonNullable<DistributedCache['bounds']>, key: string, json: string, ttl: number, group: CacheGroup | undefined): Promise<unknown> {
    const hashed = this.hashed(key)
    const name = group?.name ?? ''
    let gid = this.groupIds.get(name)
    if (gid === undefined) this.groupIds.set(name, gid = groupId(name))
    const groupKey = json === '' ? b.keys.index : b.keys.group(gid)
    return await boundedWriteScript(c, [b.keys.entry(hashed), b.keys.index, b.keys.sizes, b.keys.bytes, groupKey],
      [json, Math.ceil(ttl), this.channel, key, hashed, gid, group?.maxEntries ?? Number.MAX_SAFE_INTEGER, b.maxBytes,
        b.keys.entryPrefix, b.keys.groupPrefix, ENTRY_OVERHEAD])
  }

  /** Record `version` for `key`; a value is kept only if it is the newest known. */
  private remember (key: string, version: number, json: string | undefined, expiresAt: number): void {
    const rec = this.local.peek(key)
    const seen = Math.max(rec?.seen ?? 0, version)
    if (version < seen) return
    const size = json === undefined ? 0 : json.length
    // a value bigger than the whole local budget is not held (Redis still has it)
    if (size > this.local.maxSize) {
      this.local.set(key, { version: 0, seen, json: undefined, decoded: undefined, expiresAt: 0 }, 0)
      return
    }
    this.local.set(key, { version: json === undefined ? 0 : version, seen, json, decoded: undefined, expiresAt }, size)
  }

  private drop (key: string, rec: Local): void {
    rec.json = undefined
    rec.decoded = undefined
    rec.version = 0
    this.local.resize(key, 0)
  }

  private onInvalidation (raw: string): void {
    let msg: { k?: unknown, v?: unknown }
    try { msg = JSON.parse(raw) as typeof msg } catch { return }
    const v = Number(msg.v)
    if (typeof msg.k !== 'string' || !Number.isFinite(v)) return
    const rec = this.local.peek(msg.k)
    if (rec === undefined) {
      this.local.set(msg.k, { version: 0, seen: v, json: undefined, decoded: undefined, expiresAt: 0 }, 0)
      return
    }
    if (v > rec.seen) rec.seen = v
    // an older local value is now a miss: free it
    if (rec.version < rec.seen && rec.version !== 0) this.drop(msg.k, rec)
  }

  private dropValues (): void {
    for (const [key, rec] of this.local.entries()) if (rec.version !== 0) this.drop(key, rec)
  }

  private entryKey (key: string): string {
    // unbounded, the `{tag}` keeps each entry in its own slot; bounded, the namespace's tag holds them all
    return this.bounds === undefined ? this.ctx.keys.cacheEntry(this.hashed(key)) : this.bounds.keys.entry(this.hashed(key))
  }

  /** A digest of the key: no client string reaches a key name. */
  private hashed (key: string): string {
    const h = createHash('sha1')
    if (this.namespace !== '') h.update(this.namespace).update('\0')
    return h.update(key).digest('base64url')
  }
}
