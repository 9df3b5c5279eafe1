// The HTTP method lists, declared once: what the gateway proxies, what a health probe may send, what is replayed
// by default. The config schema, the route table, the retry policy, the tests and the benches import them.
import http from 'node:http'

/** Every method Node's parser knows except CONNECT (a tunnel, not a request the proxy forwards): the catch-all route's. */
export const PROXIED_METHODS: readonly string[] = Object.freeze(http.METHODS.filter((m) => m !== 'CONNECT'))

/** The seven common methods: the routes of the tests and benches that name no method list. */
export const COMMON_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const

/** What an active health probe may send (config `healthCheck.active.method`). */
export const PROBE_METHODS = ['GET', 'HEAD', 'OPTIONS'] as const
export type ProbeMethod = typeof PROBE_METHODS[number]

/** RFC 9110 §9.2.2 idempotent methods, replayed by default (TRACE is not proxied). */
export const IDEMPOTENT_METHODS = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'] as const

/** Is `method` one of IDEMPOTENT_METHODS? (a switch: on every failed try and every hedge decision) */
export function isIdempotent (method: string): boolean {
  switch (method) {
    case 'GET': case 'HEAD': case 'OPTIONS': case 'PUT': case 'DELETE': return true
    default: return false
  }
}
