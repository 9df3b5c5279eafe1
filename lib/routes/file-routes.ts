/**
 * The routes of a gateway config (`routes[]`, from the file or the shared store) as a RouteTable.
 * Each entry's config is what the load balancer and the rate limiter read for a matching request.
 */
import { configInput, type GatewayConfig, type RouteConfig } from '../config/index.js'
import { RouteTable, type TableRoute } from './route-table.js'

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
}

// fingerprint of each config object built here: an unchanged route keeps its object (and so its plans)
const fingerprints = new WeakMap<object, string>()

/**
 * Build the table of `config.routes`. Entries equal to one of `previous`'s keep that object, so the
 * plans the plugins cached for it (and their counters) survive a change to other routes.
 */
export function fileRouteTable (config: GatewayConfig, previous?: RouteTable): RouteTable {
  const raw = (configInput(config) as { routes?: Array<Record<string, unknown> | undefined> } | undefined)?.routes
  const reuse = new Map<string, object>()
  for (const c of previous?.configs ?? []) {
    const fp = fingerprints.get(c)
    if (fp !== undefined) reuse.set(fp, c)
  }
  const routes: TableRoute[] = config.routes.map((route, i) => {
    // a strategy (and hashOn) the route inherits is left to the upstream, so changing the upstream's applies
    const own = raw === undefined || raw[i]?.strategy !== undefined
    const built: FileRouteConfig = {
      upstream: route.upstream,
      strategy: own ? route.strategy : undefined,
      hashOn: own || raw[i]?.hashOn !== undefined ? route.hashOn : undefined,
      gatewayRoute: route.path,
      failover: route.failover,
      fallbackResponse: route.fallbackResponse,
      rateLimit: route.rateLimit,
      cache: route.cache,
      websocket: route.websocket,
    }
    const fp = fingerprint(route.methods, built)
    let cfg: object = built
    if (fp !== undefined) {
      cfg = reuse.get(fp) ?? built
      fingerprints.set(cfg, fp)
    }
    return { path: route.path, methods: route.methods, config: cfg }
  })
  return new RouteTable(routes)
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
