// Limits on what a client connection may hold (node.timeouts, node.maxConnections), applied to a node:http
// server (framework-free: the gateway plugin hands over Fastify's server).
import type { IncomingMessage, Server } from 'node:http'
import type { Socket } from 'node:net'

export interface ClientLimits {
  /** ms to receive a whole request head; 0: none. */
  headers: number
  /** ms of idle time allowed between two request-body chunks; 0: none. */
  body: number
  /** ms an idle keep-alive connection stays open. */
  keepAlive: number
  /** Most open connections; undefined: no cap. */
  maxConnections?: number
}

/** Node checks header/request deadlines on an interval (default 30 s): check four times per headers timeout, at most every 30 s. */
const checkInterval = (headers: number): number => Math.min(30_000, Math.max(50, Math.floor(headers / 4)))

/**
 * Set the server's own limits: Node's headersTimeout (the whole head), keepAliveTimeout, maxConnections (Node
 * closes a connection past the cap as soon as it is accepted). requestTimeout stays 0: a long upload is bounded
 * by the body idle timeout (armBodyIdle), not by its total length. Call before listen (the deadline check
 * interval is read then).
 */
export function applyServerLimits (server: Server, limits: ClientLimits): void {
  server.requestTimeout = 0
  server.headersTimeout = limits.headers
  if (limits.headers > 0) (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval = checkInterval(limits.headers)
  server.keepAliveTimeout = limits.keepAlive
  if (limits.maxConnections !== undefined) server.maxConnections = limits.maxConnections
}

/** Does the request announce a body still to come? */
function hasBody (req: IncomingMessage): boolean {
  if (req.complete) return false
  const len = req.headers['content-length']
  return (len !== undefined && len !== '0') || req.headers['transfer-encoding'] !== undefined
}

function cutClient (this: IncomingMessage): void {
  // the socket goes: the body stream errors, so the proxy's upstream request is aborted at once
  this.socket?.destroy()
}

function bodyDone (this: IncomingMessage): void {
  this.off('timeout', cutClient)
  const socket = this.socket as (Socket & { _httpMessage?: unknown }) | null
  // only while the response still holds the socket: once it has finished, Node's keep-alive timer is set and stays
  if (socket != null && socket._httpMessage != null) socket.setTimeout(0)
}

/**
 * Cut the client when its request body stalls for `ms` (the socket's idle timer: every chunk received, or byte
 * written, restarts it). Armed only for a request with a body still to come; disarmed at the body's end, after
 * which Node's keep-alive timer takes over. Nothing is allocated per request (shared listeners).
 */
export function armBodyIdle (req: IncomingMessage, ms: number): void {
  if (ms <= 0 || !hasBody(req)) return
  const socket = req.socket
  if (socket === null || socket === undefined) return
  socket.setTimeout(ms)
  // Node's server emits the socket's 'timeout' on the request whose body is incomplete
  req.once('timeout', cutClient)
  req.once('end', bodyDone)
}
