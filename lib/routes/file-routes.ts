/**
 * The routes of a gateway config (`routes[]`, from the file or the shared store) as a RouteTable.
 * Each entry's config is what the load balancer and the rate limiter read for a matching request.
 */
import { configInput, type GatewayConfig, type RouteConfig } from '../config/index.js'
import { compileHashOn } from '../proxy/hash-key.js'
import { RouteTable, type TableRoute } from './route-table.js'
import { kSplit, Split } from './split.js'

/** The route config of one configured route (the keys the data-path plugins read). */
export interface FileRouteConfig {
  upstream: string
  /** Absent: the upstream's strategy at the time of the request (an upstream change applies at once). */
  strategy: RouteConfig['strategy'] | undefined
  hashOn: string | undefined
  /** The route's path: metrics label and rate-limit key of the route. */
  gatewayRoute: string
  failover: RouteConfig['failover']
  fallbackResponse: RouteConfig['fallbackResponse']
  rateLimit: RouteConfig['rateLimit']
  cache: RouteConfig['cache']
  /** false: Upgrade requests are refused. */
  websocket: boolean
  stripPrefix: boolean
  rewritePrefix: string | undefined
  preserveHost: boolean
  /** Overrides of the upstream's headers/body timeouts (ms; 0: none). */
  timeouts: RouteConfig['timeouts']
}

/** A split route's table entry: the request's side is chosen at match time (resolveSplit). */
export interface SplitRouteConfig {
  [kSplit]: Split
  gatewayRoute: string
}

// fingerprint of each config object built here: an unchanged route keeps its object (and so its plans)
const fingerprints = new WeakMap<object, string>()

/**
 * Build the table of `config.routes`. Entries equal to one of `previous`'s keep that object, so the
 * plans the plugins cached for it (and their counters) survive a change to other routes.
 */
export function fileRouteTable (config: GatewayConfig, previous?: RouteTable): RouteTable {
  const build = builder(config, previous)
  return new RouteTable(config.routes.map(build))
}

/** The same, built `chunk` routes at a time with a turn of the event loop between chunks (config sync of a large table). */
export async function fileRouteTableAsync (config: GatewayConfig, previous?: RouteTable, chunk = 1000): Promise<RouteTable> {
  const build = builder(config, previous)
  const routes: TableRoute[] = []
  for (let i = 0; i < config.routes.length; i++) {
    if (i % chunk === chunk - 1) await new Promise((resolve) => setImmediate(resolve))
    routes.push(build(config.routes[i], i))
  }
  return new RouteTable(routes)
}

function builder (config: GatewayConfig, previous: RouteTable | undefined): (route: RouteConfig, i: number) => TableRoute {
  const raw = (configInput(config) as { routes?: Array<Record<string, unknown> | undefined> } | undefined)?.routes
  const reuse = new Map<string, object>()
  for (const entry of previous?.configs ?? []) {
    for (const c of (entry as Partial<SplitRouteConfig>)[kSplit]?.sides ?? [entry]) {
      const fp = fingerprints.get(c)
      if (fp !== undefined) reuse.set(fp, c)
    }
  }
  const keep = (methods: readonly string[] | undefined, built: FileRouteConfig): object => {
    const fp = fingerprint(methods, built)
    if (fp === undefined) return built
    const cfg = reuse.get(fp) ?? built
    fingerprints.set(cfg, fp)
    return cfg
  }
  return (route, i) => {
    // a strategy (and hashOn) the route inherits is left to the upstream, so changing the upstream's applies
    const own = raw === undefined || raw[i]?.strategy !== undefined
    const built: FileRouteConfig = {
      upstream: route.upstream ?? '',
      strategy: own ? route.strategy : undefined,
      hashOn: own || raw[i]?.hashOn !== undefined ? route.hashOn : undefined,
      gatewayRoute: route.path,
      failover: route.failover,
      fallbackResponse: route.fallbackResponse,
      rateLimit: route.rateLimit,
      cache: route.cache,
      websocket: route.websocket,
      stripPrefix: route.stripPrefix,
      rewritePrefix: route.rewritePrefix,
      preserveHost: route.preserveHost,
      timeouts: route.timeouts,
    }
    let cfg: object
    if (route.split === undefined) {
      cfg = keep(route.methods, built)
    } else {
      // each side: the route's own failover keys only (normalize merged the first side's upstream into the rest)
      const set = Object.keys((raw?.[i]?.failover ?? {}) as object)
      const failover = Object.fromEntries(Object.entries(route.failover).filter(([k]) => raw === undefined || set.includes(k))) as FileRouteConfig['failover']
      const sides = route.split.map((side) => keep(route.methods, { ...built, upstream: side.upstream, failover }))
      const split: SplitRouteConfig = {
        [kSplit]: new Split(sides, route.split.map((side) => side.weight), route.hashOn === undefined ? undefined : compileHashOn(route.hashOn)),
        gatewayRoute: route.path,
      }
      cfg = split
    }
    return { path: route.path, methods: route.methods, hosts: route.hosts, headers: route.match?.headers, config: cfg }
  }
}

/** JSON of the entry; undefined when it holds a function (a key or cost function from code: never shared). */
function fingerprint (methods: readonly string[] | undefined, cfg: FileRouteConfig): string | undefined {
  let fn = false
  const s = JSON.stringify([methods ?? null, cfg], (_k, v: unknown) => {
    if (typeof v === 'function') fn = true
    return v
  })
  return fn ? undefined : s
}
