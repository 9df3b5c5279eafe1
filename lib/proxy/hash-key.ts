// Extracts the consistent-hash key a route asked for (`hashOn`): ip | path | header:<name> | cookie:<name>.
// A request without the header or cookie hashes on its client IP (stated fallback: the same client keeps
// its target, instead of the balancer's round-robin fallback spreading its requests).

export interface HashSource {
  ip: string | undefined
  /** The request URL as received (path and query). */
  url: string
  headers: Record<string, string | string[] | undefined>
}

export type HashKeyFn = (src: HashSource) => string | undefined

export function compileHashOn (hashOn: string | undefined): HashKeyFn {
  const spec = hashOn ?? 'ip'
  if (spec === 'ip') return (src) => src.ip
  if (spec === 'path') {
    return (src) => {
      const q = src.url.indexOf('?')
      return q === -1 ? src.url : src.url.slice(0, q)
    }
  }
  if (spec.startsWith('header:')) {
    const name = spec.slice(7).toLowerCase()
    return (src) => {
      const v = src.headers[name]
      return (Array.isArray(v) ? v[0] : v) ?? src.ip
    }
  }
  if (spec.startsWith('cookie:')) {
    const name = spec.slice(7)
    return (src) => readCookie(src.headers.cookie, name) ?? src.ip
  }
  throw new TypeError(`hashOn must be ip, path, header:<name> or cookie:<name>, got "${spec}"`)
}

/** One cookie's value from a Cookie header, without parsing the rest. */
export function readCookie (header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  const str = Array.isArray(header) ? header.join('; ') : header
  let start = 0
  while (start < str.length) {
    let end = str.indexOf(';', start)
    if (end === -1) end = str.length
    const eq = str.indexOf('=', start)
    if (eq !== -1 && eq < end && str.slice(start, eq).trim() === name) {
      return decodeURIComponentSafe(str.slice(eq + 1, end).trim())
    }
    start = end + 1
  }
  return undefined
}

function decodeURIComponentSafe (s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}
