// The server's 'upgrade' event for the configured routes: a matched route's upgrade goes to the load
// balancer's upgrade proxy; anything else is served by Fastify as an ordinary request (Upgrade ignored).
import http, { type IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { GatewayError } from '../lib/errors.js'
import { answer } from '../lib/proxy/upgrade.js'
import type { FileRouteConfig } from '../lib/routes/file-routes.js'
import type { RouteTableRef } from '../lib/routes/route-table.js'
import { resolveSplit } from '../lib/routes/split.js'

export function onUpgrade (fastify: FastifyInstance, routes: RouteTableRef): void {
  const server = fastify.server
  if (typeof (server as { on?: unknown }).on !== 'function') return
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const upgrade = String(req.headers.upgrade ?? '').toLowerCase()
    const url = req.url ?? '/'
    const found = upgrade === 'h2c' ? undefined : routes.current.match(req.method ?? 'GET', url, req.headers)
    const matched = found === undefined ? undefined : resolveSplit(found, { ip: req.socket.remoteAddress, url, headers: req.headers }) as FileRouteConfig
    if (matched === undefined) {
      // another upgrade listener (e.g. @fastify/websocket on an app route) owns it; else an ordinary request
      if (server.listenerCount('upgrade') > 1) return
      serveAsRequest(server, req, socket)
      return
    }
    if (matched.websocket === false) {
      const err = new GatewayError('UPGRADE_REFUSED', matched.gatewayRoute)
      answer(socket, err.statusCode, err.toJSON())
      return
    }
    if (!fastify.hasDecorator('gatewayRateLimit')) { fastify.loadBalancer.upgrade(req, socket, head, matched); return }
    // the route's rate limits count the upgrade as a request; over them, the socket gets the 429 and its headers
    socket.on('error', noop) // a client reset while the limiter decides must not crash the process
    fastify.gatewayRateLimit.checkUpgrade(req, matched).then((d) => {
      if (socket.destroyed) return
      if (d.allowed) fastify.loadBalancer.upgrade(req, socket, head, matched)
      else answer(socket, d.status, d.body, d.headers)
    }, (err: Error) => {
      fastify.log.error({ err }, 'rate limit of an upgrade failed')
      answer(socket, 500, { statusCode: 500, error: 'Internal Server Error', message: 'rate limit failed' })
    })
  })
}

function noop (): void {}

/** Hand an upgrade request nobody takes to the server's request handler, on a connection that closes after it (as before). */
function serveAsRequest (server: http.Server, req: IncomingMessage, socket: Duplex): void {
  const res = new http.ServerResponse(req)
  res.shouldKeepAlive = false
  res.assignSocket(socket as import('node:net').Socket)
  res.once('finish', () => {
    res.detachSocket(socket as import('node:net').Socket)
    socket.end()
  })
  socket.on('error', () => { socket.destroy() })
  server.emit('request', req, res)
}
