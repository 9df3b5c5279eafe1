// The TTL'd registry format shared by gateway nodes (membership) and other services (discovery).
//
// A group (the gateway nodes, or one service) is two kinds of keys in one hash slot:
//   <index>       ZSET   member = entry id, score = epoch-ms at which the entry's key expires
//   <index>:<id>  STRING the entry as JSON, written with `SET ... PX <ttl>`
// The entry key is the truth: an entry is live exactly while its key exists, so Redis's own
// expiry decides, with one clock. The index only lets a reader find the ids without SCAN
// (SCAN on Redis Cluster would have to visit every master); a reader MGETs the keys and skips
// the missing ones. Writers prune ids that expired more than a minute ago.
// Keys: see keys.ts (`${cluster}:{nodes}` and `${cluster}:svc:{<service>}`).
import { isKeyPart, type RegistryKeys } from './keys.js'
import type { RedisLink } from './redis-link.js'
import { defineScript } from './script.js'

/** ms an expired id stays in the index before a writer prunes it (slack for writers' clocks). */
export const INDEX_GRACE_MS = 60_000
/** ids per MGET, so one reply stays small. */
const MGET_CHUNK = 200

// KEYS[1] index zset, KEYS[2] entry key; ARGV[1] id, ARGV[2] JSON, ARGV[3] ttl ms, ARGV[4] grace ms.
// Returns 1 when the entry was absent (a join), else 0.
const beatScript = defineScript('fhgRegistryBeat', 2, `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
-- SET ... GET would do in one call, but needs Redis 6.2: EXISTS keeps 6.0 working
local fresh = redis.call('EXISTS', KEYS[2]) == 0
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
-- score = when the entry lapses, by Redis's clock: readers need not know each writer's ttl
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
-- hygiene: ids whose key lapsed long ago belong to writers that are gone
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - grace)
-- the index outlives its last writer by the grace only
if redis.call('PTTL', KEYS[1]) < ttl + grace then redis.call('PEXPIRE', KEYS[1], ttl + grace) end
if fresh then return 1 end
return 0
`)

// KEYS[1] index, KEYS[2] entry; ARGV[1] id. Returns 1 when something was removed.
const removeScript = defineScript('fhgRegistryRemove', 2, `
local n = redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return n
`)

/** Write (or refresh) entry `id` with a TTL; resolves true when it was absent before (a join). */
export async function registryBeat (link: RedisLink, keys: RegistryKeys, id: string, entry: unknown, ttlMs: number): Promise<boolean> {
  const json = JSON.stringify(entry)
  const fresh = await link.call('registry beat', (c) => beatScript(c, [keys.index, keys.entry(id)], [id, json, Math.ceil(ttlMs), INDEX_GRACE_MS]))
  return fresh === 1
}

/** Remove entry `id` at once (graceful leave); resolves true when it existed. */
export async function registryRemove (link: RedisLink, keys: RegistryKeys, id: string): Promise<boolean> {
  const n = await link.call('registry remove', (c) => removeScript(c, [keys.index, keys.entry(id)], [id]))
  return n === 1
}

/** Every live entry of the group, parsed; entries that are not JSON objects with a string `id` are skipped. */
export async function registryList<T extends { id: string }> (link: RedisLink, keys: RegistryKeys): Promise<T[]> {
  const ids = (await link.call('registry index', (c) => c.zrange(keys.index, 0, '-1'))).filter(isKeyPart)
  const out: T[] = []
  for (let i = 0; i < ids.length; i += MGET_CHUNK) {
    const chunk = ids.slice(i, i + MGET_CHUNK)
    const values = await link.call('registry read', (c) => c.mget(chunk.map((id) => keys.entry(id))))
    for (let j = 0; j < chunk.length; j++) {
      const entry = parseEntry<T>(values[j])
      // the id inside must match the key, so a stray write cannot impersonate another entry
      if (entry !== undefined && entry.id === chunk[j]) out.push(entry)
    }
  }
  return out
}

function parseEntry<T> (raw: string | null | undefined): T | undefined {
  if (raw === null || raw === undefined) return undefined
  try {
    const v: unknown = JSON.parse(raw)
    return typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string' ? v as T : undefined
  } catch {
    return undefined
  }
}
