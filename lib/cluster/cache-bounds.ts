// Bounds of a DistributedCache namespace in Redis (the response cache's): at most `maxBytes` in all,
// at most `maxEntries` keys per group (a route). Every key of the namespace shares one hash tag, so
// one script sees the entry and both indexes atomically, on Redis Cluster too (the namespace then
// lives on one master: its size is what maxBytes allows).
//
//   {tag}:e:<h>   HASH { v, d } of one entry, PX ttl (as the unbounded cache)
//   {tag}:idx     ZSET member <h>, score = epoch-ms the entry expires: eviction order, all groups
//   {tag}:g:<g>   ZSET the same, one group's members: its count
//   {tag}:sz      HASH <h> -> "<charge> <g>": what each member costs and where it is indexed
//   {tag}:bytes   STRING the sum of the charges
//
// A member's charge is its JSON, its key name and ENTRY_OVERHEAD bytes for the key and index rows, so
// maxBytes bounds what the namespace really takes (within the allocator's rounding). Past a bound the
// entries that expire first go (the ones with the least life left); expired members are swept 32 at a
// time on each write. An entry whose own charge exceeds maxBytes is not stored.
import { createHash } from 'node:crypto'
import { defineScript } from './script.js'

/** Bytes charged per entry on top of its JSON and key name: Redis's per-key and per-row costs (measured with bench/cache-busting.ts). */
export const ENTRY_OVERHEAD = 720

export interface BoundedKeys {
  entry (hashed: string): string
  index: string
  sizes: string
  bytes: string
  group (name: string): string
  /** prefixes the script appends a member or a group id to */
  entryPrefix: string
  groupPrefix: string
}

export function boundedKeys (cluster: string, namespace: string): BoundedKeys {
  const base = `${cluster}:cache:{${cluster}:${namespace}}`
  return {
    entry: (hashed) => `${base}:e:${hashed}`,
    index: `${base}:idx`,
    sizes: `${base}:sz`,
    bytes: `${base}:bytes`,
    group: (id) => `${base}:g:${id}`,
    entryPrefix: `${base}:e:`,
    groupPrefix: `${base}:g:`,
  }
}

/** The id a group's name takes in key names: a digest, so any route path fits. */
export function groupId (name: string): string {
  return createHash('sha1').update(name).digest('base64url').slice(0, 16)
}

// KEYS: 1 entry, 2 idx, 3 sz, 4 bytes, 5 the group's zset (a delete passes idx: unused).
// ARGV: 1 JSON ('' deletes), 2 ttl ms, 3 channel, 4 the caller's key, 5 member, 6 group id,
//       7 maxEntries, 8 maxBytes, 9 entry prefix, 10 group prefix, 11 overhead.
// Returns { version, stored (1 or 0) }; a refused or deleted value is still announced, so nodes drop the old one.
// The keys the script builds from the prefixes share KEYS' hash tag (one slot).
export const boundedWriteScript = defineScript('fhgCacheBoundedWrite', 5, `
local t = redis.call('TIME')
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(nowUs / 1000)
local v = (tonumber(redis.call('HGET', KEYS[1], 'v')) or 0) + 1
if v < nowUs then v = nowUs end
local vs = string.format('%.0f', v)

-- drop a member everywhere: its entry, its index rows, its charge
local function forget(m)
  local rec = redis.call('HGET', KEYS[3], m)
  redis.call('ZREM', KEYS[2], m)
  if not rec then return end
  local size, g = string.match(rec, '^(%d+) (.*)$')
  redis.call('DEL', ARGV[9] .. m)
  redis.call('ZREM', ARGV[10] .. g, m)
  redis.call('HDEL', KEYS[3], m)
  redis.call('DECRBY', KEYS[4], size)
end

-- the old value of this key goes first (rewritten, resized, or deleted)
forget(ARGV[5])
redis.call('DEL', KEYS[1])
local stored = 0
if ARGV[1] ~= '' then
  local charge = #ARGV[1] + #KEYS[1] + tonumber(ARGV[11])
  local maxBytes = tonumber(ARGV[8])
  if charge <= maxBytes then
    -- sweep what has expired (their keys are gone; their rows and charges are not)
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 32)) do forget(m) end
    -- the group's count, then the namespace's bytes: evict what expires first
    local maxEntries = tonumber(ARGV[7])
    while redis.call('ZCARD', KEYS[5]) >= maxEntries do
      local m = redis.call('ZRANGE', KEYS[5], 0, 0)[1]
      if not m then break end
      redis.call('ZREM', KEYS[5], m)
      forget(m)
    end
    local total = tonumber(redis.call('GET', KEYS[4]) or '0')
    while total + charge > maxBytes do
      local m = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
      if not m then
        -- nothing indexed is left: the sum drifted (keys removed behind the script's back)
        redis.call('SET', KEYS[4], 0)
        break
      end
      forget(m)
      total = tonumber(redis.call('GET', KEYS[4]) or '0')
    end
    local expires = now + tonumber(ARGV[2])
    redis.call('HSET', KEYS[1], 'v', vs, 'd', ARGV[1])
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    redis.call('ZADD', KEYS[2], expires, ARGV[5])
    redis.call('ZADD', KEYS[5], expires, ARGV[5])
    redis.call('HSET', KEYS[3], ARGV[5], charge .. ' ' .. ARGV[6])
    redis.call('INCRBY', KEYS[4], charge)
    stored = 1
  end
end
redis.call('PUBLISH', ARGV[3], cjson.encode({ k = ARGV[4], v = vs }))
return { vs, stored }
`)
