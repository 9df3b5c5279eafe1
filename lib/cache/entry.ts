// A cached answer as the response cache keeps it, and its JSON form in the two-level cache.

export interface CachedResponse {
  status: number
  /** Response headers as the upstream sent them (hop-by-hop, Set-Cookie and the gateway's own left out). */
  headers: Array<[string, string | string[]]>
  body: Buffer
  /** epoch-ms the answer was stored (the storing node's clock) */
  storedAt: number
  /** seconds of Age it already had when stored */
  age: number
  /** epoch-ms it stops being fresh */
  expiresAt: number
  etag: string | undefined
}

/** Where the variants of one URL live: the request headers they vary on and the epoch of their keys. */
export interface VaryRecord {
  /** random id: a purge removes this record, so the variants stored under it can never be reached again */
  epoch: string
  /** request header names, lower case, sorted */
  vary: string[]
  /** epoch-ms the record expires */
  expiresAt: number
}

interface EntryJson { s: number, h: Array<[string, string | string[]]>, b: string, t: number, a: number, x: number }
interface VaryJson { e: string, h: string[], x: number }

export function encodeEntry (r: CachedResponse): EntryJson {
  return { s: r.status, h: r.headers, b: r.body.toString('base64'), t: r.storedAt, a: r.age, x: r.expiresAt }
}

export function encodeVary (r: VaryRecord): VaryJson {
  return { e: r.epoch, h: r.vary, x: r.expiresAt }
}

/** Both kinds of values share one cache: the JSON tells them apart ('e' only in a vary record). Bad JSON decodes to undefined. */
export function decodeValue (json: string): CachedResponse | VaryRecord | undefined {
  let v: Partial<EntryJson & VaryJson>
  try { v = JSON.parse(json) as typeof v } catch { return undefined }
  if (typeof v !== 'object' || v === null) return undefined
  if (typeof v.e === 'string' && Array.isArray(v.h)) return { epoch: v.e, vary: v.h as string[], expiresAt: Number(v.x) }
  if (typeof v.s !== 'number' || typeof v.b !== 'string' || !Array.isArray(v.h)) return undefined
  const headers = v.h as Array<[string, string | string[]]>
  const etag = headers.find(([k]) => k === 'etag')?.[1]
  return {
    status: v.s,
    headers,
    body: Buffer.from(v.b, 'base64'),
    storedAt: Number(v.t),
    age: Number(v.a) || 0,
    expiresAt: Number(v.x),
    etag: typeof etag === 'string' ? etag : undefined,
  }
}

export function isVaryRecord (v: unknown): v is VaryRecord {
  return typeof v === 'object' && v !== null && typeof (v as VaryRecord).epoch === 'string'
}

export function isCachedResponse (v: unknown): v is CachedResponse {
  return typeof v === 'object' && v !== null && Buffer.isBuffer((v as CachedResponse).body)
}

/** Headers never stored: hop-by-hop ones, per-client ones and the ones the gateway sets on every answer. */
const NOT_STORED = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authenticate',
  'proxy-authorization', 'proxy-connection', 'age', 'x-cache', 'set-cookie', 'retry-after'])

/** The headers of an answer worth replaying (rate-limit headers belong to the request that got them). */
export function storedHeaders (headers: Record<string, string | string[] | number | undefined>): Array<[string, string | string[]]> {
  const out: Array<[string, string | string[]]> = []
  for (const name in headers) {
    const v = headers[name]
    if (v === undefined || NOT_STORED.has(name) || name.startsWith('ratelimit') || name.startsWith('x-ratelimit')) continue
    out.push([name, typeof v === 'number' ? String(v) : v])
  }
  return out
}
