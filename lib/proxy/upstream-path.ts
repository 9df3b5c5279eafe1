// The path a route sends upstream (stripPrefix / rewritePrefix, as @fastify/http-proxy names them).
// Built by cutting the request's own path after the route prefix's segments: the matched path is
// never decoded or re-parsed, and the query string is kept as received.

/**
 * `(url) => path` for a route mounted at `prefix`; undefined when the path goes upstream as is.
 * `/api` + rewritePrefix `/v2`: `/api/users?x=1` -> `/v2/users?x=1`, `/api` -> `/v2`; stripPrefix: `/users?x=1`, `/`.
 */
export function compileUpstreamPath (prefix: string, opts: { stripPrefix?: boolean, rewritePrefix?: string }): ((url: string) => string) | undefined {
  if (opts.rewritePrefix === undefined && opts.stripPrefix !== true) return undefined
  const replacement = (opts.rewritePrefix ?? '').replace(/\/+$/, '')
  // segments of the prefix: `/` 0, `/api` 1, `/api/v1` 2 (the table matched whole segments)
  let segments = 0
  const p = prefix.replace(/\/+$/, '')
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) segments++
  return (url: string): string => {
    const q = url.indexOf('?')
    const path = q === -1 ? url : url.slice(0, q)
    // the request path is cut at the slash after the prefix's last segment (its own spelling, escapes kept)
    let cut = 0
    for (let n = 0; n <= segments; n++) {
      const next = path.indexOf('/', cut + (n === 0 ? 0 : 1))
      if (next === -1) { cut = path.length; break }
      cut = next
    }
    const rest = segments === 0 ? path : path.slice(cut)
    const out = replacement + rest
    const query = q === -1 ? '' : url.slice(q)
    return (out === '' ? '/' : out.charCodeAt(0) === 47 ? out : `/${out}`) + query
  }
}
