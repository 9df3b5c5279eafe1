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
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
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
const kIp = Symbol('fastify-ha-gateway.accessLog.ip')
type Marked = Socket & { [kRead]?: number, [kWritten]?: number, [kIp]?: string }

type Routed = AccessRequest & { [kProxy]?: RequestRun | null, [kMatchedRoute]?: { gatewayRoute?: unknown, upstream?: unknown } | null }

/** A string as a JSON string: quoted as is when nothing in it needs escaping (the usual path, id, ip), else JSON.stringify. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\uffff]/
export function jsonString (s: string | undefined | null): string {
  if (s == null) return 'null'
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"'
}

// Quoted once: the methods (the set Node's HTTP parser accepts), the time (it changes once a ms, and several lines share each ms) and,
// per route plan and target, the route/upstream/target fields (names from the config, never from a request).
const METHODS: Record<string, string> = Object.create(null)
let lastNow = -1
let lastNowText = ''
const kFields = Symbol('fastify-ha-gateway.accessLog.fields')
interface Fields { upstream: string, text: string }
type Labelled = { label: string, [kFields]?: Map<string | undefined, Fields> }

/** `"route":…,"upstream":…,"target":…` of a proxied request, built once per plan and target. */
function proxiedFields (plan: Labelled, upstream: string, target: string | undefined): string {
  let byTarget = plan[kFields]
  if (byTarget === undefined) { byTarget = new Map(); plan[kFields] = byTarget }
  const known = byTarget.get(target)
  // the upstream is the plan's, or for a try in its fallback pool that pool's
  if (known !== undefined && known.upstream === upstream) return known.text
  const text = `"route":${jsonString(plan.label)},"upstream":${jsonString(upstream)},"target":${jsonString(target)}`
  if (byTarget.size < 1024) byTarget.set(target, { upstream, text })
  return text
}

/** Hundredths of a ms as a JSON number, without a float's formatting (12.3456 → 12.35, 7 → 7.00). */
function msText (ms: number): string {
  if (!Number.isFinite(ms)) return 'null'
  if (ms < 0 || ms > 1e12) return String(Math.round(ms * 100) / 100) // not a duration Fastify gives: as before
  const h = Math.round(ms * 100)
  const frac = h % 100
  return `${(h - frac) / 100}.${frac < 10 ? '0' : ''}${frac}`
}

/**
 * The line of a request whose response just ended (Fastify's onResponse), newline included.
 * Fields: time (epoch ms), reqId, method, path (as sent, query included), status, route (the gateway route, or
 * the declared route's URL; null: none matched), upstream and target (of the last try; null: not proxied), tries,
 * ms, bytesIn and bytesOut (on the wire, headers included; null when the socket is gone), ip.
 */
export function accessLine (request: AccessRequest, reply: AccessReply, now: number): string {
  const r = request as Routed
  const st = r[kProxy]
  let fields: string
  let tries = 0
  if (st != null) {
    fields = proxiedFields(st.plan as Labelled, st.upstreamName, st.targetId)
    tries = st.tryCount
  } else {
    // not proxied (404, 429, a static route): the route the request matched, if any
    let route: string | undefined
    let upstream: string | undefined
    const m = r[kMatchedRoute]
    if (m != null && m !== NO_ROUTE) {
      if (typeof m.gatewayRoute === 'string') route = m.gatewayRoute
      if (typeof m.upstream === 'string') upstream = m.upstream
    }
    if (route === undefined && m !== NO_ROUTE) route = request.routeOptions.url
    fields = `"route":${jsonString(route)},"upstream":${jsonString(upstream)},"target":null`
  }
  let bytesIn = 'null'
  let bytesOut = 'null'
  let ip: string | undefined
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
    // without X-Forwarded-For the client IP is the socket's peer whatever trustProxy says: quoted once a connection
    if (request.headers['x-forwarded-for'] === undefined) {
      ip = socket[kIp]
      if (ip === undefined) { ip = jsonString(request.ip); socket[kIp] = ip }
    }
  }
  if (ip === undefined) ip = jsonString(request.ip)
  if (now !== lastNow) { lastNow = now; lastNowText = String(now) }
  const method = METHODS[request.method] ?? (METHODS[request.method] = jsonString(request.method))
  return `{"level":30,"time":${lastNowText},"msg":"access","reqId":${jsonString(request.id)},"method":${method},"path":${jsonString(request.url)},` +
    `"status":${reply.statusCode},${fields},"tries":${tries},"ms":${msText(reply.elapsedTime)},"bytesIn":${bytesIn},"bytesOut":${bytesOut},"ip":${ip}}\n`
}
