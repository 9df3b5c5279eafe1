/**
 * Where a request's gateway route config comes from.
 *
 * Today: the Fastify route's own `config` (routes declared in code, and the routes the gateway
 * registers from its file). The plugins of the data path (rate limiter, load balancer) read a
 * request's route config only through `routeConfigOf`, so a route table that changes at run time
 * (config sync) can answer for a catch-all route without either plugin knowing.
 *
 * The returned object's identity is the cache key of each plugin's per-route plan (WeakMap):
 * a new object means a new plan.
 */
export interface RequestLike {
  routeOptions: { config: object, url?: string }
}

export function routeConfigOf (request: RequestLike): object {
  return request.routeOptions.config
}
