// What the response cache may serve and store (RFC 9111, for a shared cache with a fixed ttl per route).
//
// Lookup: GET and HEAD only. Bypassed (the request goes to the upstream and its answer is not stored)
// when the request says Cache-Control no-store, no-cache or private (or Pragma: no-cache), carries
// Authorization (the key does not hold the credentials: one user's answer must not reach another),
// or asks for a Range. only-if-cached gets the stored answer or 504, never the upstream.
// Store: a GET answer whose status is cacheable by default (RFC 9110 §15.1, less 206), with no
// Cache-Control no-store, no-cache or private, no Set-Cookie and no `Vary: *`. It is kept for the
// route's ttl, shortened by s-maxage (else max-age, else Expires - Date) and by the Age it came with.
import { parseCacheControl } from './cache-control.js'

type Headers = Record<string, string | string[] | number | undefined>

/** RFC 9110 §15.1 "heuristically cacheable" statuses (206 left out: ranges are not cached). */
const CACHEABLE_STATUS = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])

/** Request Cache-Control only-if-cached (RFC 9111 §5.2.1.7): a miss is answered 504 instead of asking the upstream. */
export function onlyIfCached (headers: Headers): boolean {
  const cc = headers['cache-control']
  return cc !== undefined && parseCacheControl(String(cc)).onlyIfCached
}

/** Why a request does not use the cache, or undefined when it may be answered from it. */
export function requestBypass (method: string, headers: Headers): string | undefined {
  if (method !== 'GET' && method !== 'HEAD') return 'method'
  const cc = headers['cache-control']
  if (cc !== undefined) {
    const d = parseCacheControl(String(cc))
    if (d.noStore) return 'no-store'
    if (d.private) return 'private'
    if (d.noCache || d.maxAge === 0) return 'no-cache'
  } else if (headers.pragma !== undefined && /no-cache/i.test(String(headers.pragma))) {
    return 'no-cache'
  }
  if (headers.authorization !== undefined) return 'authorization'
  if (headers.range !== undefined) return 'range'
  return undefined
}

/** Methods that change what a URL names: a success invalidates its cached answer (RFC 9111 §4.4). */
export function isUnsafe (method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE'
}

export interface StoreDecision {
  /** ms the answer stays fresh from now */
  ttl: number
  /** seconds of Age the answer already had */
  age: number
  /** request header names (lower case, sorted) the answer varies on */
  vary: string[]
}

/**
 * Whether a GET answer may be stored, and for how long; undefined: not stored.
 * `routeTtl` (ms) is the most it is kept; `now` (epoch-ms) reads Expires.
 */
export function storeDecision (status: number, headers: Headers, routeTtl: number, now: number): StoreDecision | undefined {
  if (!CACHEABLE_STATUS.has(status)) return undefined
  if (headers['set-cookie'] !== undefined) return undefined
  const d = parseCacheControl(headers['cache-control'] as string | string[] | undefined)
  if (d.noStore || d.private || d.noCache) return undefined
  const vary = varyOf(headers.vary)
  if (vary === undefined) return undefined
  let lifetime = routeTtl
  const own = d.sMaxAge ?? d.maxAge
  if (own !== undefined) {
    lifetime = Math.min(lifetime, own * 1000)
  } else if (headers.expires !== undefined) {
    const expires = Date.parse(String(headers.expires))
    // an invalid Expires means "already expired" (RFC 9111 §5.3)
    if (Number.isNaN(expires)) return undefined
    const date = headers.date === undefined ? now : Date.parse(String(headers.date))
    lifetime = Math.min(lifetime, expires - (Number.isNaN(date) ? now : date))
  }
  const ageHeader = Number(headers.age)
  const age = Number.isFinite(ageHeader) && ageHeader > 0 ? Math.floor(ageHeader) : 0
  const ttl = lifetime - age * 1000
  if (!(ttl > 0)) return undefined
  return { ttl, age, vary }
}

/** The header names of Vary, lower case, sorted, deduplicated; undefined for `*` (never stored). */
export function varyOf (value: string | string[] | number | undefined): string[] | undefined {
  if (value === undefined || value === '') return []
  const names = new Set<string>()
  for (const part of (Array.isArray(value) ? value.join(',') : String(value)).split(',')) {
    const n = part.trim().toLowerCase()
    if (n === '*') return undefined
    if (n !== '') names.add(n)
  }
  return [...names].sort()
}
