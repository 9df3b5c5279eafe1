/**
 * The gateway's configured routes as one immutable table: longest-prefix match by path segment,
 * methods filter. A route's `path` matches itself and everything below it (`/api` matches `/api`,
 * `/api/` and `/api/users`, not `/apix`). Config sync builds a new table per applied config and
 * swaps it in one assignment (RouteTableRef): a request keeps the entry it matched.
 */

/** One route as the table takes it; `config` is what routeConfigOf() answers for a matching request. */
export interface TableRoute {
  /** Path prefix, starting with `/` (trailing slashes ignored). */
  path: string
  /** Methods routed (upper case); absent: all. */
  methods?: readonly string[]
  /** Hosts (lower case; `*.example.com` for any subdomain); absent: any host. */
  hosts?: readonly string[]
  /** Header values the request must carry (names lower case); absent: none. */
  headers?: Readonly<Record<string, string>>
  config: object
}

interface Entry {
  methods: readonly string[] | undefined
  headers: ReadonlyArray<readonly [string, string]> | undefined
  config: object
}

export type RequestHeaders = Record<string, string | string[] | undefined>

const SLASH = 47

/** `/api/` -> `/api`, `` -> `/`: the key a route path is stored under. */
export function normalizePrefix (path: string): string {
  let end = path.length
  while (end > 1 && path.charCodeAt(end - 1) === SLASH) end--
  return end === 0 ? '/' : path.slice(0, end)
}

export class RouteTable {
  static readonly EMPTY = new RouteTable([])

  /** Entries by normalized prefix, in declaration order. */
  private readonly byPrefix = new Map<string, Entry[]>()
  /** Longest prefix held: a walk starts at most this far into the path. */
  private readonly maxLength: number
  /** hasLength[n]: some prefix is n characters long (a walk skips the other cuts without slicing). */
  private readonly hasLength: Uint8Array
  /** The routes' config objects, in declaration order. */
  readonly configs: readonly object[]
  /** Tables of the routes with hosts: by exact host, and by wildcard suffix (`.example.com`, longest first). */
  private readonly exactHosts: Map<string, RouteTable> | undefined
  private readonly wildHosts: Array<readonly [string, RouteTable]> | undefined

  constructor (routes: readonly TableRoute[]) {
    let max = 0
    const configs: object[] = []
    const byHost = new Map<string, TableRoute[]>()
    for (const r of routes) {
      if (typeof r.path !== 'string' || r.path.charCodeAt(0) !== SLASH) throw new TypeError(`route path must start with /: ${String(r.path)}`)
      configs.push(r.config)
      if (r.hosts !== undefined) {
        for (const h of r.hosts) {
          const host = h.toLowerCase()
          let list = byHost.get(host)
          if (list === undefined) byHost.set(host, list = [])
          list.push({ ...r, hosts: undefined })
        }
        continue
      }
      const key = normalizePrefix(r.path)
      let list = this.byPrefix.get(key)
      if (list === undefined) this.byPrefix.set(key, list = [])
      const headers = r.headers === undefined ? undefined : Object.entries(r.headers).map(([k, v]) => [k.toLowerCase(), v] as const)
      const entry: Entry = { methods: r.methods === undefined ? undefined : r.methods.map((m) => m.toUpperCase()), headers, config: r.config }
      // a route with match conditions is tried before those without on the same prefix
      if (headers === undefined) list.push(entry)
      else list.splice(list.findIndex((e) => e.headers === undefined) === -1 ? list.length : list.findIndex((e) => e.headers === undefined), 0, entry)
      if (key.length > max) max = key.length
    }
    if (byHost.size > 0) {
      this.exactHosts = new Map()
      const wild: Array<readonly [string, RouteTable]> = []
      for (const [host, list] of byHost) {
        if (host.startsWith('*.')) wild.push([host.slice(1), new RouteTable(list)])
        else this.exactHosts.set(host, new RouteTable(list))
      }
      this.wildHosts = wild.sort((a, b) => b[0].length - a[0].length)
    }
    this.maxLength = max
    this.hasLength = new Uint8Array(max + 1)
    for (const key of this.byPrefix.keys()) this.hasLength[key.length] = 1
    this.configs = configs
  }

  get size (): number { return this.configs.length }

  /**
   * The config of the longest route prefix of `url`'s path that routes `method`, or undefined.
   * A prefix whose routes all leave the method out is skipped for a shorter one (as separate
   * per-method routes would be). `url` may carry a query string; percent-escapes are decoded as
   * the router does (decodeURI: an escaped `/` stays a character of its segment).
   */
  match (method: string, url: string, headers?: RequestHeaders): object | undefined {
    if (this.exactHosts !== undefined && headers !== undefined) {
      const host = hostOf(headers)
      if (host !== undefined) {
        // the exact host's routes, then the wildcards' (most specific first), then the host-less ones
        const m = this.exactHosts.get(host)?.match(method, url, headers)
        if (m !== undefined) return m
        for (const [suffix, table] of this.wildHosts!) {
          if (host.length <= suffix.length || !host.endsWith(suffix)) continue
          const w = table.match(method, url, headers)
          if (w !== undefined) return w
        }
      }
    }
    if (this.byPrefix.size === 0) return undefined
    let path = url
    const q = url.indexOf('?')
    if (q !== -1) path = url.slice(0, q)
    if (path.includes('%')) path = safeDecode(path)
    if (path.charCodeAt(0) !== SLASH) return undefined
    let end = path.length
    while (end > 1 && path.charCodeAt(end - 1) === SLASH) end--
    // no prefix is longer than maxLength: start at the last segment boundary that fits
    if (end > this.maxLength) {
      const cut = path.lastIndexOf('/', this.maxLength)
      // `/api/users` with maxLength 4: `/api` (cut 4) is a candidate only if a boundary follows it
      end = path.charCodeAt(this.maxLength) === SLASH ? this.maxLength : cut
    }
    for (;;) {
      const list = end <= 1
        ? this.byPrefix.get('/')
        : this.hasLength[end] === 0 ? undefined : this.byPrefix.get(end === path.length ? path : path.slice(0, end))
      if (list !== undefined) {
        for (const e of list) {
          if ((e.methods === undefined || e.methods.includes(method)) && (e.headers === undefined || headersMatch(e.headers, headers))) return e.config
        }
      }
      if (end <= 1) return undefined // the root was the last candidate
      end = path.lastIndexOf('/', end - 1)
    }
  }
}

function headersMatch (want: ReadonlyArray<readonly [string, string]>, headers: RequestHeaders | undefined): boolean {
  if (headers === undefined) return false
  for (const [name, value] of want) {
    const v = headers[name]
    if (Array.isArray(v) ? !v.includes(value) : v !== value) return false
  }
  return true
}

/** The request's host, lower case, without port or trailing dot (HTTP/2: :authority). */
function hostOf (headers: RequestHeaders): string | undefined {
  let h = headers.host ?? headers[':authority']
  if (Array.isArray(h)) h = h[0]
  if (h === undefined || h === '') return undefined
  let end = h.length
  if (h.charCodeAt(0) === 91) { // [v6]:port
    end = h.indexOf(']') + 1
  } else {
    const colon = h.lastIndexOf(':')
    if (colon !== -1) end = colon
  }
  if (h.charCodeAt(end - 1) === 46) end--
  return h.slice(0, end).toLowerCase()
}

function safeDecode (path: string): string {
  try { return decodeURI(path) } catch { return path }
}

/**
 * The live table: one reference swapped whole. Readers take `current` once per request
 * (routeConfigOf caches the match on the request), so a swap never changes a request in flight.
 */
export class RouteTableRef {
  current: RouteTable
  /** Bumps on each swap. */
  version = 0
  constructor (table: RouteTable = RouteTable.EMPTY) { this.current = table }
  swap (table: RouteTable): void {
    this.current = table
    this.version++
  }
}
