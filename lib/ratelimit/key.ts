// Redis key names of the limiter: the client key is hashed, so no client string reaches a key name.
import * as crypto from 'node:crypto'

// One-shot crypto.hash (Node >= 20.12) skips the Hash object; createHash where it is missing
const sha1: (data: string) => Buffer = typeof crypto.hash === 'function'
  ? (data) => crypto.hash('sha1', data, 'buffer')
  : (data) => crypto.createHash('sha1').update(data).digest()

/** Bytes of the hash kept: 96 bits, 16 base64url chars. */
const HASH_BYTES = 12
const HASH_CHARS = 16
const B64URL = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_')

/**
 * A short stable hash of a client key: SHA-1 truncated to 96 bits (16 base64url chars).
 * Two keys share a budget only on a collision: ~2^48 distinct keys before one is likely.
 */
export function hashKey (clientKey: string): string {
  return sha1(clientKey).toString('base64url', 0, HASH_BYTES)
}

/** Braces would move the Redis Cluster hash tag; `%` is escaped too so distinct names stay distinct. */
function escapeName (name: string): string {
  return /[%{}]/.test(name) ? name.replace(/%/g, '%25').replace(/\{/g, '%7B').replace(/\}/g, '%7D') : name
}

/**
 * `${prefix}${routeId}:${ruleIndex}:{${hash}}`: the hash is the Cluster hash tag, so every rule of one
 * client (and any later multi-key script over them) lands in one slot, and clients spread over slots.
 */
export function rateLimitKey (prefix: string, routeId: string, ruleIndex: number, clientKey: string): string {
  return `${escapeName(prefix)}${escapeName(routeId)}:${ruleIndex}:{${hashKey(clientKey)}}`
}

/**
 * rateLimitKey with the per-rule part built once, for the request path. Each key is written into one
 * buffer and decoded as a flat string: ~70 bytes per key in a Map, where a concatenated (cons) string
 * holding a sliced hash weighs twice that.
 */
export function keyBuilder (prefix: string, routeId: string, ruleIndex: number): (clientKey: string) => string {
  const head = Buffer.from(`${escapeName(prefix)}${escapeName(routeId)}:${ruleIndex}:{`)
  const buf = Buffer.alloc(head.length + HASH_CHARS + 1)
  head.copy(buf)
  buf[buf.length - 1] = 0x7d // }
  const at = head.length
  return (clientKey) => {
    const d = sha1(clientKey)
    // base64url of bytes 0..11: 3 bytes -> 4 chars
    for (let i = 0, o = at; i < HASH_BYTES; i += 3, o += 4) {
      const n = (d[i] << 16) | (d[i + 1] << 8) | d[i + 2]
      buf[o] = B64URL[n >>> 18]
      buf[o + 1] = B64URL[(n >>> 12) & 63]
      buf[o + 2] = B64URL[(n >>> 6) & 63]
      buf[o + 3] = B64URL[n & 63]
    }
    return buf.toString('utf8')
  }
}
