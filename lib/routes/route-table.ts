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
  config: object
}

interface Entry {
  methods: readonly string[] | undefined
  config: object
}

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

  constructor (routes: readonly TableRoute[]) {
    let max = 0
    const configs: object[] = []
    for (const r of routes) {
      if (typeof r.path !== 'string' || r.path.charCodeAt(0) !== SLASH) throw new TypeError(`route path must start with /: ${String(r.path)}`)
      const key = normalizePrefix(r.path)
      let list = this.byPrefix.get(key)
      if (list === undefined) this.byPrefix.set(key, list = [])
      list.push({ methods: r.methods === undefined ? undefined : r.methods.map((m) => m.toUpperCase()), config: r.config })
      configs.push(r.config)
      if (key.length > max) max = key.length
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
  match (method: string, url: string): object | undefined {
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
          if (e.methods === undefined || e.methods.includes(method)) return e.config
        }
      }
      if (end <= 1) return undefined // the root was the last candidate
      end = path.lastIndexOf('/', end - 1)
    }
  }
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
