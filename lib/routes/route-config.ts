/**
 * Where a request's gateway route config comes from.
 *
 * A route declared in code carries it in its own Fastify `config`. The routes of the gateway's
 * config (file or shared store) live in a route table behind one catch-all route, whose `config`
 * holds the live table under `kRouteTable`: the request's config is then the table entry its path
 * matches. The plugins of the data path (rate limiter, load balancer) read a request's route config
 * only through `routeConfigOf`, so neither knows which kind of route it serves.
 *
 * The returned object's identity is the cache key of each plugin's per-route plan (WeakMap):
 * a new object means a new plan. The match is made once per request and kept on it, so every
 * plugin sees the same entry even if the table is swapped while the request is in flight (and
 * Fastify's `routeOptions` getter, which builds an object per read, runs once per request).
 */
import type { RouteTableRef } from './route-table.js'
import { resolveSplit } from './split.js'

/** Key of the live table in the catch-all route's config. */
export const kRouteTable = Symbol.for('fastify-ha-gateway.routeTable')
/** Key of the matched entry on the request (the gateway decorates requests with it: one shape). */
export const kMatchedRoute = Symbol.for('fastify-ha-gateway.matchedRoute')
/** What a catch-all request whose path matches no route resolves to: no upstream, no limits (answered 404). */
export const NO_ROUTE: object = Object.freeze({})

export interface RequestLike<C extends object = object> {
  routeOptions: { config: C, url?: string | undefined }
  method?: string | undefined
  url?: string | undefined
  ip?: string | undefined
  headers?: Record<string, string | string[] | undefined> | undefined
}

/**
 * The request's route config, typed as the request's own: on a Fastify request that is
 * FastifyContextConfig, which the suite's plugins extend (`upstream`, `strategy`, `rateLimit`, ...);
 * a config-file route's table entry holds those same keys.
 */
export function routeConfigOf<C extends object> (request: RequestLike<C>): C {
  const r = request as RequestLike<C> & { [kMatchedRoute]?: C | null }
  const m = r[kMatchedRoute]
  if (m != null) return m // resolved earlier in this request: no routeOptions object built again
  const config = request.routeOptions.config
  const ref = (config as { [kRouteTable]?: RouteTableRef })[kRouteTable]
  if (ref === undefined) {
    if (m === null) r[kMatchedRoute] = config // the gateway decorated requests with the slot: keep it
    return config
  }
  const url = request.url ?? '/'
  const found = ref.current.match(request.method ?? 'GET', url, request.headers)
  // a split route's side is chosen here, once per request
  const matched = (found === undefined ? NO_ROUTE : resolveSplit(found, { ip: request.ip, url, headers: request.headers ?? {} })) as C
  r[kMatchedRoute] = matched // a table match is always kept: every plugin must see the same entry
  return matched
}

/** The catch-all route's `config`: requests on it resolve through `ref`. */
export function tableRouteConfig (ref: RouteTableRef): object {
  return { [kRouteTable]: ref }
}
