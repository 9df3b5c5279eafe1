/**
 * Route confinement: a request path that a URL parser would change is refused before routing,
 * so the path the route table (or Fastify's router) matched is the path the upstream receives.
 * WHATWG `new URL()` (what reply-from and undici build) turns `\` into `/`, resolves `.` and `..`
 * segments (also written `%2e`), drops a `#fragment` and reads `//host` as an authority; an
 * upstream may also decode `%2f` / `%5c` into separators. Each of those shapes is refused here.
 */

const SLASH = 47 // /
const BACKSLASH = 92 // \
const PERCENT = 37 // %
const DOT = 46 // .
const HASH = 35 // #
const QUESTION = 63 // ?

/** Hex digit pair at `i` of `s` (after a `%`), as a byte; -1 when not two hex digits. */
function hexByte (s: string, i: number): number {
  const hi = hexDigit(s.charCodeAt(i))
  const lo = hexDigit(s.charCodeAt(i + 1))
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo
}

function hexDigit (c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  const l = c | 0x20
  return l >= 97 && l <= 102 ? l - 87 : -1
}

/**
 * Why `url` (a request target: path and optional query) is refused, or undefined when it is safe.
 * One pass over the path part, no allocation for a safe path.
 */
export function badPathReason (url: string): string | undefined {
  if (url.charCodeAt(0) !== SLASH) return 'the path must start with /'
  if (url.charCodeAt(1) === SLASH) return 'the path starts with // (read as a host by URL parsers)'
  const n = url.length
  // dots in the current segment (a `.` or `%2e`), and whether it holds anything else
  let dots = 0
  let other = false
  for (let i = 1; i <= n; i++) {
    const c = i === n ? QUESTION : url.charCodeAt(i)
    if (c === SLASH || c === QUESTION) {
      if (!other && (dots === 1 || dots === 2)) return 'a dot segment (. or ..) in the path'
      if (c === QUESTION) return undefined // the query is forwarded as is: URL parsers do not resolve it
      dots = 0
      other = false
    } else if (c === DOT) {
      dots++
    } else if (c === BACKSLASH) {
      return 'a backslash in the path'
    } else if (c === HASH) {
      return 'a # in the path (URL parsers drop what follows)'
    } else if (c === PERCENT) {
      const b = hexByte(url, i + 1)
      if (b === SLASH || b === BACKSLASH) return 'an encoded / or \\ in the path'
      if (b === DOT) { dots++; i += 2 } else other = true
    } else {
      other = true
    }
  }
  return undefined
}
