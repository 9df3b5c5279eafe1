// Path confinement for upgrade requests: a path a URL parser would change is refused, never re-parsed.
// Local stand-in for the hardening work's FHG_ERR_BAD_PATH check; swap for it when that lands.

const DOT_SEGMENT = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)/i

/** Why `url`'s path is refused (backslash, encoded slash or backslash, dot segment), or undefined when it is fine. */
export function badPathReason (url: string): string | undefined {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (path.charCodeAt(0) !== 47) return 'not an absolute path'
  if (path.includes('\\')) return 'backslash'
  if (/%2f|%5c/i.test(path)) return 'encoded slash'
  if (DOT_SEGMENT.test(path)) return 'dot segment'
  return undefined
}
