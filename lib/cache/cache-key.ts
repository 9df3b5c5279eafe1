// The URL a cached answer is keyed on: the path, and the query parameters the route keys on
// (`routes[].cache.query`: all, ignore, or a list of names). The upstream always gets the whole URL.

/** all: the URL as received; ignore: the path alone; a set: only those parameters, in the order received. */
export type QueryKeying = 'all' | 'ignore' | ReadonlySet<string>

export function cacheUrl (url: string, query: QueryKeying): string {
  if (query === 'all') return url
  const q = url.indexOf('?')
  if (q === -1) return url
  const path = url.slice(0, q)
  if (query === 'ignore') return path
  let kept = ''
  for (const pair of url.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=')
    const raw = eq === -1 ? pair : pair.slice(0, eq)
    if (query.has(raw) || (raw.includes('%') || raw.includes('+') ? query.has(decodeName(raw)) : false)) kept += (kept === '' ? '?' : '&') + pair
  }
  return path + kept
}

function decodeName (raw: string): string {
  try { return decodeURIComponent(raw.replace(/\+/g, ' ')) } catch { return raw }
}
