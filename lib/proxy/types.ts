// What the proxy data path works on: a route's resolved plan, and the structural request/reply types
// (Fastify's objects satisfy them; lib/ never imports fastify).
import type { ServerResponse } from 'node:http'
import type { Strategy } from '../balancers/types.js'
import type { RouteCounters } from '../metrics/proxy-metrics.js'
import type { UpstreamEntry } from '../upstream/registry.js'
import type { ClientSocket } from './headers.js'
import type { RouteFailover } from './failover-registry.js'
import type { HashKeyFn } from './hash-key.js'

/** What the proxy reads of a request (a FastifyRequest). */
export interface ProxyRequest {
  readonly method: string
  readonly url: string
  readonly ip: string
  readonly protocol: string
  readonly headers: Record<string, string | string[] | undefined>
  readonly body?: unknown
  /** The Node request: its `url` is what reply-from builds the upstream path from. */
  readonly raw?: { readonly url?: string, readonly complete: boolean, readonly destroyed: boolean, readonly socket?: ClientSocket | null }
}

/** What the proxy does with a reply (a FastifyReply with @fastify/reply-from's `from`). */
export interface ProxyReply {
  readonly request: ProxyRequest
  readonly raw: ServerResponse
  readonly sent: boolean
  readonly elapsedTime: number
  readonly log: { warn (obj: object, msg: string): void }
  code (statusCode: number): unknown
  type (contentType: string): unknown
  header (name: string, value: unknown): unknown
  headers (values: Record<string, string>): unknown
  removeHeader (name: string): unknown
  getHeader (name: string): unknown
  getHeaders (): Record<string, unknown>
  send (payload?: unknown): unknown
  from (source?: string, opts?: never): unknown
}

/** Everything a route resolved once: the request path only reads it. */
export interface RoutePlan {
  upstreamName: string
  strategy: Strategy | undefined
  hashKey: HashKeyFn | undefined
  label: string
  entry: UpstreamEntry | undefined
  generation: number
  metrics: RouteCounters | undefined
  failover: RouteFailover
  /** The path sent upstream from the request URL (stripPrefix/rewritePrefix); undefined: the URL's path as is. */
  upstreamPath?: ((url: string) => string) | undefined
  /** Send the client's Host upstream. */
  preserveHost?: boolean
  /** The route's overrides of the upstream's headers/body timeouts (ms; 0: none). */
  timeouts?: { readonly headers?: number | undefined, readonly body?: number | undefined } | undefined
}
