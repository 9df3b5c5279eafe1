// The response cache: GET answers of the routes that ask for it (`routes[].cache: { ttl }`), kept in
// the cluster's two-level cache (a local LRU with TTL in front of Redis; local only without Redis).
//
// Two kinds of values, both in the derived cache's namespace:
//   `v\0<url>`                         VaryRecord: the request headers the URL's answers vary on, and an epoch
//   `e\0<epoch>\0<url>\0<h1>\0<h2>...` CachedResponse of one variant (the values of the Vary headers)
// The URL is the request's path and query as received (a route's path maps it to one upstream).
// A purge (an explicit one, or a successful POST/PUT/PATCH/DELETE on the URL) deletes the vary
// record: the delete is versioned and broadcast like every write, so a node told about it never
// serves the old record again, and the variants under the old epoch can no longer be reached (they
// expire in Redis by their TTL). Racing stores only cost misses: the last vary record written wins.
import type { CacheGroup, CacheHit } from '../cluster/cache.js'
import { encodeEntry, encodeVary, isCachedResponse, isVaryRecord, type CachedResponse, type VaryRecord } from './entry.js'
import { randomBytes } from 'node:crypto'

/** What the response cache needs of the two-level cache (DistributedCache, derived with decode: decodeValue). */
export interface ResponseCacheBackend {
  readonly distributed: boolean
  peek<T>(key: string): CacheHit<T> | undefined
  getEntry<T>(key: string): Promise<CacheHit<T> | undefined>
  set(key: string, value: unknown, ttl: number, group?: CacheGroup): Promise<number | undefined>
  delete(key: string): Promise<number | undefined>
}

type RequestHeaders = Record<string, string | string[] | undefined>

/** One request's view of the cache: filled by lookup(), used again by store(). */
export interface Lookup {
  /** the URL as the cache keys it (see cache-key.ts) */
  url: string
  /** the URL's vary record when one was found */
  record: VaryRecord | undefined
}

export class ResponseCache {
  constructor (private readonly backend: ResponseCacheBackend) {}

  /**
   * The fresh answer held on this node for the request, undefined on a certain miss, or null when
   * only Redis can tell (call lookupRemote). Never waits.
   */
  lookupLocal (l: Lookup, headers: RequestHeaders, now: number): CachedResponse | undefined | null {
    const rec = this.backend.peek<unknown>(varyKey(l.url))?.value
    if (!isVaryRecord(rec)) return this.backend.distributed ? null : undefined
    l.record = rec
    const hit = this.backend.peek<unknown>(entryKey(rec, l.url, headers))?.value
    if (isCachedResponse(hit)) return hit.expiresAt > now ? hit : undefined
    return this.backend.distributed ? null : undefined
  }

  /** Like lookupLocal, asking Redis for what this node does not hold; a Redis failure is a miss. */
  async lookupRemote (l: Lookup, headers: RequestHeaders): Promise<CachedResponse | undefined> {
    const rec = l.record ?? (await this.backend.getEntry<unknown>(varyKey(l.url)))?.value
    if (!isVaryRecord(rec)) return undefined
    l.record = rec
    const hit = (await this.backend.getEntry<unknown>(entryKey(rec, l.url, headers)))?.value
    return isCachedResponse(hit) && hit.expiresAt > Date.now() ? hit : undefined
  }

  /**
   * Store one answer to `l`'s request: the variant first, then (if the URL had none, its Vary names
   * changed, or it would expire first) the vary record, so a node that finds the record finds the variant.
   * Both count against `group` (the route's maxEntries in Redis).
   */
  async store (l: Lookup, headers: RequestHeaders, vary: string[], response: Omit<CachedResponse, 'etag'>, group?: CacheGroup): Promise<void> {
    const now = Date.now()
    const ttl = response.expiresAt - now
    if (!(ttl > 0)) return
    let rec = l.record
    const sameVary = rec !== undefined && rec.vary.length === vary.length && rec.vary.every((h, i) => h === vary[i])
    if (rec === undefined || !sameVary || rec.expiresAt <= now) {
      rec = { epoch: randomBytes(6).toString('base64url'), vary, expiresAt: response.expiresAt }
    } else if (rec.expiresAt < response.expiresAt) {
      rec = { ...rec, expiresAt: response.expiresAt }
    } else {
      rec = undefined // the URL's record outlives this variant: leave it
    }
    const epochRec = rec ?? l.record!
    const stored = await this.backend.set(entryKey(epochRec, l.url, headers), encodeEntry({ ...response, etag: undefined }), ttl, group)
    if (stored === undefined || rec === undefined) return
    await this.backend.set(varyKey(l.url), encodeVary(rec), Math.max(1, rec.expiresAt - Date.now()), group)
  }

  /** Forget every variant of `url` on every node; resolves false when Redis could not be told. */
  async purge (url: string): Promise<boolean> {
    return (await this.backend.delete(varyKey(url))) !== undefined
  }
}

export function varyKey (url: string): string { return `v\0${url}` }

function entryKey (rec: VaryRecord, url: string, headers: RequestHeaders): string {
  let key = `e\0${rec.epoch}\0${url}`
  for (const h of rec.vary) {
    const v = headers[h]
    key += `\0${v === undefined ? '' : Array.isArray(v) ? v.join(', ') : v}`
  }
  return key
}
