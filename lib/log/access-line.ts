// One access-log line per request, in pino's JSON shape (level, time, msg) so log tools read it like any
// other line, built by hand: no serializer, no child logger, one string per request.
import type { Socket } from 'node:net'
import { kProxy } from '../proxy/engine.js'
import type { RequestRun } from '../proxy/request-run.js'
import { kMatchedRoute, NO_ROUTE } from '../routes/route-config.js'

/** What the line reads of a request (a FastifyRequest satisfies it). */
export interface AccessRequest {
  readonly id: string
  readonly method: string
  readonly url: string
  readonly ip: string | undefined
  readonly raw: { readonly socket: Socket | null }
  readonly routeOptions: { readonly url?: string }
}

/** What the line reads of a reply (a FastifyReply satisfies it). */
export interface AccessReply {
  readonly statusCode: number
  /** ms since the request arrived (Fastify's own clock: ends when the response ended). */
  readonly elapsedTime: number
}

// Per connection, the socket's byte counters at the end of its previous response: requests on one
// HTTP/1.1 connection are answered in order, so the difference is this exchange's bytes on the wire.
const kRead = Symbol('fastify-ha-gateway.accessLog.read')
const kWritten = Symbol('fastify-ha-gateway.accessLog.written')
type Marked = Socket & { [kRead]?: number, [kWritten]?: number }

type Routed = AccessRequest & { [kProxy]?: RequestRun | null, [kMatchedRoute]?: { gatewayRoute?: unknown, upstream?: unknown } | null }

const str = (s: string | undefined | null): string => s == null ? 'null' : JSON.stringify(s)

/**
 * The line of a request whose response just ended (Fastify's onResponse), newline included.
 * Fields: time (epoch ms), reqId, method, path (as sent, query included), status, route (the gateway route, or
 * the declared route's URL; null: none matched), upstream and target (of the last try; null: not proxied), tries,
 * ms, bytesIn and bytesOut (on the wire, headers included; null when the socket is gone), ip.
 */
export function accessLine (request: AccessRequest, reply: AccessReply, now: number): string {
  const r = request as Routed
  const st = r[kProxy]
  let route: string | undefined
  let upstream: string | undefined
  let target: string | undefined
  let tries = 0
  if (st != null) {
    route = st.plan.label
    upstream = st.upstreamName
    target = st.targetId
    tries = st.tryCount
  } else {
    // not proxied (404, 429, a static route): the route the request matched, if any
    const m = r[kMatchedRoute]
    if (m != null && m !== NO_ROUTE) {
      if (typeof m.gatewayRoute === 'string') route = m.gatewayRoute
      if (typeof m.upstream === 'string') upstream = m.upstream
    }
    if (route === undefined && m !== NO_ROUTE) route = request.routeOptions.url
  }
  let bytesIn = 'null'
  let bytesOut = 'null'
  const socket = request.raw.socket as Marked | null
  if (socket !== null) {
    const read = socket.bytesRead
    const written = socket.bytesWritten as number | undefined // undefined once the socket is destroyed
    if (written !== undefined) {
      bytesIn = String(read - (socket[kRead] ?? 0))
      bytesOut = String(written - (socket[kWritten] ?? 0))
      socket[kRead] = read
      socket[kWritten] = written
    }
  }
  return `{"level":30,"time":${now},"msg":"access","reqId":${str(request.id)},"method":${str(request.method)},"path":${str(request.url)},` +
    `"status":${reply.statusCode},"route":${str(route)},"upstream":${str(upstream)},"target":${str(target)},"tries":${tries},` +
    `"ms":${Math.round(reply.elapsedTime * 100) / 100},"bytesIn":${bytesIn},"bytesOut":${bytesOut},"ip":${str(request.ip)}}\n`
}
