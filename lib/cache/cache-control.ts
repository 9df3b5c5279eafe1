// Cache-Control (RFC 9111 §5.2) as the response cache reads it: the directives that decide
// whether an answer may be stored or served, and for how long.

export interface CacheDirectives {
  noStore: boolean
  noCache: boolean
  private: boolean
  public: boolean
  /** seconds; undefined when absent or not a number */
  maxAge: number | undefined
  /** seconds; the shared-cache max-age */
  sMaxAge: number | undefined
  /** request: answer from the cache or 504, never from the upstream */
  onlyIfCached: boolean
}

const NONE: CacheDirectives = Object.freeze({ noStore: false, noCache: false, private: false, public: false, maxAge: undefined, sMaxAge: undefined, onlyIfCached: false })

/** Parse one or more Cache-Control header values; directive names are case-insensitive, unknown ones are ignored. */
export function parseCacheControl (value: string | string[] | undefined): CacheDirectives {
  if (value === undefined || value === '') return NONE
  const text = Array.isArray(value) ? value.join(',') : value
  const d: CacheDirectives = { ...NONE }
  for (const part of text.split(',')) {
    const eq = part.indexOf('=')
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase()
    // `private="set-cookie"` (a field list) is still private for a shared cache
    switch (name) {
      case 'no-store': d.noStore = true; break
      case 'no-cache': d.noCache = true; break
      case 'private': d.private = true; break
      case 'public': d.public = true; break
      case 'max-age': d.maxAge = seconds(part, eq); break
      case 's-maxage': d.sMaxAge = seconds(part, eq); break
      case 'only-if-cached': d.onlyIfCached = true; break
    }
  }
  return d
}

/** delta-seconds (RFC 9111 §1.2.2), quotes tolerated; a bad value counts as 0 (stale at once), as the RFC advises. */
function seconds (part: string, eq: number): number {
  if (eq === -1) return 0
  const raw = part.slice(eq + 1).trim().replace(/^"|"$/g, '')
  if (!/^\d+$/.test(raw)) return 0
  return Math.min(Number(raw), 2 ** 31)
}
