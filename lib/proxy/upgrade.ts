// Upgrade proxying (WebSocket and any other `Upgrade`): the route's balancer picks a target as for a
// request, the handshake is forwarded, and after the upstream's 101 the two sockets are piped as raw
// TCP (frames are never parsed, so ping/pong, binary and extensions pass untouched).
import http from 'node:http'
import https from 'node:https'
import type { Duplex } from 'node:stream'
import type { PickContext, Strategy } from '../balancers/types.js'
import { GatewayError, httpReason } from '../errors.js'
import type { UpgradeMetrics } from '../metrics/upgrade-metrics.js'
import type { UpstreamEntry, UpstreamRegistry } from '../upstream/registry.js'
import type { Target } from '../upstream/target.js'
import type { HashKeyFn } from './hash-key.js'
import { HOP_BY_HOP, setForwarded, type ClientSocket, type HeaderBag } from './headers.js'
import { badPathReason } from '../routes/path-guard.js'
import type { TrustFn } from '../trust-proxy.js'

/** What the upgrade proxy needs of a route (resolved by the caller from the route's config). */
export interface UpgradeRoute {
  upstream: string
  strategy: Strategy | undefined
  hashKey: HashKeyFn | undefined
  /** Metrics label. */
  label: string
  /** Connect failures tried on another target, at most (the route's failover.maxRetries). */
  maxRetries: number
  /** Send the client's Host upstream instead of the target's. */
  preserveHost?: boolean
  /** The path sent upstream from the request URL (stripPrefix/rewritePrefix); absent: the URL as is. */
  upstreamPath?: ((url: string) => string) | undefined
}

export interface UpgradeProxyOptions {
  upstreams: UpstreamRegistry
  metrics?: UpgradeMetrics
  /** Close a tunnel after this long with no byte either way (ms); 0: never. */
  idleTimeout: number
  /** Peers whose forwarding headers are passed on (node.trustProxy); absent: none. */
  trust?: TrustFn | undefined
  /** Told of failures worth a log line. */
  log?: (msg: string, data: Record<string, unknown>) => void
}

/** One proxied upgraded connection. */
interface Tunnel {
  client: Duplex
  upstream: Duplex
  target: Target
  websocket: boolean
  done: boolean
  end: () => void
}

// RFC 6455 §5.5.1 close frame from a server (unmasked), status 1001 "going away".
const CLOSE_1001 = Buffer.from([0x88, 0x02, 0x03, 0xe9])

export class UpgradeProxy {
  private readonly open = new Set<Tunnel>()
  private readonly waiters: Array<() => void> = []
  private readonly pickCtx: PickContext = { now: 0, tried: undefined, hashKey: undefined }
  /** Set once the app closes: new upgrades are answered 503. */
  private closing = false

  constructor (private readonly opts: UpgradeProxyOptions) {}

  /** Upgraded connections open now. */
  get size (): number { return this.open.size }

  /** Proxy one upgrade request whose route is `route` (the caller matched it and checked the route allows upgrades). */
  handle (req: http.IncomingMessage, socket: Duplex, head: Buffer, route: UpgradeRoute): void {
    if (this.closing) { answer(socket, 503, new GatewayError('CLOSING').toJSON()); return }
    const bad = badPathReason(req.url ?? '/')
    if (bad !== undefined) {
      answer(socket, 400, new GatewayError('BAD_PATH', bad).toJSON())
      return
    }
    const entry = this.opts.upstreams.get(route.upstream)
    if (entry === undefined) { answer(socket, 500, new GatewayError('UNKNOWN_UPSTREAM', route.upstream).toJSON()); return }
    socket.on('error', noop) // a client reset before the tunnel is up must not crash the process
    this.opts.metrics?.upgrade(route.label, route.upstream)
    this.attempt(req, socket, head, route, entry, [], 0)
  }

  private attempt (req: http.IncomingMessage, socket: Duplex, head: Buffer, route: UpgradeRoute, entry: UpstreamEntry, tried: Target[], tries: number): void {
    if (socket.destroyed) return
    const target = this.pick(req, route, entry, tried)
    if (target === undefined) {
      const err = tries === 0 ? new GatewayError('NO_HEALTHY_TARGET', entry.name) : new GatewayError('UPSTREAM_CONNECT', entry.name)
      answer(socket, err.statusCode, err.toJSON())
      return
    }
    tried.push(target)
    const url = new URL(target.origin)
    const headers = upstreamHeaders(req, url.host, route.preserveHost === true, this.opts.trust)
    const secure = url.protocol === 'https:'
    const request = (secure ? https : http).request({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
      method: req.method,
      path: route.upstreamPath === undefined ? req.url : route.upstreamPath(req.url ?? '/'),
      headers,
      agent: false,
      ...(secure ? { servername: url.hostname, ...entry.tls } : {}),
    })
    let connected = false
    let settled = false
    let timer: NodeJS.Timeout | undefined
    const arm = (ms: number, fn: () => void): void => {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      if (ms > 0) { timer = setTimeout(fn, ms); timer.unref() }
    }
    const giveUp = (status: 'connect' | 'timeout', cause?: Error): void => {
      if (settled) return
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      request.destroy()
      if (status === 'connect' && tries < route.maxRetries && !socket.destroyed) {
        this.attempt(req, socket, head, route, entry, tried, tries + 1)
        return
      }
      const err = new GatewayError(status === 'connect' ? 'UPSTREAM_CONNECT' : 'UPSTREAM_TIMEOUT', entry.name, { cause })
      this.opts.log?.('upgrade failed', { upstream: entry.name, target: target.id, err: cause?.message ?? status })
      answer(socket, err.statusCode, err.toJSON())
    }
    arm(entry.timeouts.connect, () => { giveUp('connect', new Error('connect timeout')) })
    request.on('socket', (s) => {
      s.once('connect', () => {
        connected = true
        arm(entry.timeouts.headers, () => { giveUp('timeout') })
      })
      s.once('secureConnect', () => { connected = true })
    })
    request.on('error', (err) => {
      // nothing reached the upstream before a failed connect: safe to try another target
      giveUp(connected ? 'timeout' : 'connect', err)
    })
    request.on('response', (res) => {
      // the upstream refused the upgrade (401, 426, ...): its answer goes to the client as is, then the socket ends
      if (settled) { res.destroy(); return }
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      if (socket.destroyed) { res.destroy(); return }
      socket.write(statusLine(res.statusCode ?? 502, res.statusMessage) + rawHeaderLines(res.rawHeaders, true) + 'connection: close\r\n\r\n')
      res.pipe(socket)
      res.on('error', () => socket.destroy())
    })
    request.on('upgrade', (res, upstream, upHead) => {
      if (settled) { upstream.destroy(); return }
      settled = true
      if (timer !== undefined) clearTimeout(timer)
      if (socket.destroyed) { upstream.destroy(); return }
      socket.write(statusLine(res.statusCode ?? 101, res.statusMessage) + rawHeaderLines(res.rawHeaders, false) + '\r\n')
      if (upHead.length > 0) socket.write(upHead)
      if (head.length > 0) upstream.write(head)
      this.tunnel(socket, upstream, target, route, String(req.headers.upgrade ?? '').toLowerCase() === 'websocket')
    })
    request.end()
  }

  private pick (req: http.IncomingMessage, route: UpgradeRoute, entry: UpstreamEntry, tried: Target[]): Target | undefined {
    const strategy = route.strategy ?? entry.strategy
    const ctx = this.pickCtx
    ctx.now = Date.now()
    ctx.tried = tried.length === 0 ? undefined : tried
    ctx.hashKey = strategy === 'consistent_hash'
      ? (route.hashKey ?? entry.hashKey)({ ip: req.socket.remoteAddress, url: req.url ?? '/', headers: req.headers })
      : undefined
    const target = entry.balancer(strategy).pick(entry.pool, ctx)
    ctx.tried = undefined
    ctx.hashKey = undefined
    return target
  }

  private tunnel (client: Duplex, upstream: Duplex, target: Target, route: UpgradeRoute, websocket: boolean): void {
    // an open socket counts as a request in flight: least_connections and the concurrency cap see it
    target.onRequestStart()
    const m = this.opts.metrics?.opened(route.label, route.upstream)
    const t: Tunnel = {
      client,
      upstream,
      target,
      websocket,
      done: false,
      end: () => {
        if (t.done) return
        t.done = true
        client.destroy()
        upstream.destroy()
        target.onRequestEnd(-1, 0)
        m?.closed()
        this.open.delete(t)
        if (this.open.size === 0) for (const w of this.waiters.splice(0)) w()
      },
    }
    this.open.add(t)
    upstream.on('error', t.end)
    client.on('error', t.end)
    upstream.on('close', t.end)
    client.on('close', t.end)
    const idle = this.opts.idleTimeout
    if (idle > 0) {
      // socket timeouts count inactivity per direction; either side going quiet past the limit with the other quiet too ends it
      let last = Date.now()
      const touch = (): void => { last = Date.now() }
      client.on('data', touch)
      upstream.on('data', touch)
      const check = setInterval(() => {
        if (t.done) { clearInterval(check); return }
        if (Date.now() - last >= idle) { clearInterval(check); this.closeOne(t) }
      }, Math.max(50, Math.min(idle / 4, 1000)))
      check.unref()
    }
    if (typeof (client as { setNoDelay?: unknown }).setNoDelay === 'function') (client as import('node:net').Socket).setNoDelay(true)
    if (typeof (upstream as { setNoDelay?: unknown }).setNoDelay === 'function') (upstream as import('node:net').Socket).setNoDelay(true)
    client.pipe(upstream)
    upstream.pipe(client)
  }

  /** Close one tunnel: a WebSocket client gets a 1001 close frame first, any other protocol a socket end. */
  private closeOne (t: Tunnel): void {
    if (t.done) return
    t.upstream.unpipe(t.client)
    t.client.unpipe(t.upstream)
    if (t.websocket && t.client.writable) t.client.write(CLOSE_1001)
    t.client.end()
    t.upstream.end()
    // a peer that never answers the close does not hold the tunnel
    setTimeout(t.end, 1000).unref()
  }

  /** Close every open tunnel now (1001 to WebSocket clients). */
  closeAll (): void {
    this.closing = true
    for (const t of [...this.open]) this.closeOne(t)
  }

  /** Wait for the open tunnels to end by themselves, up to `timeoutMs`; then close the rest. */
  async drain (timeoutMs: number): Promise<void> {
    this.closing = true
    if (this.open.size === 0) return
    let timer: NodeJS.Timeout | undefined
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve)
      timer = setTimeout(() => { this.closeAll(); resolve() }, timeoutMs)
      timer.unref()
    })
    clearTimeout(timer)
  }
}

/** The handshake headers for the upstream: end-to-end ones, the upgrade itself, X-Forwarded-*. */
function upstreamHeaders (req: http.IncomingMessage, targetHost: string, preserveHost: boolean, trust: TrustFn | undefined): HeaderBag {
  const named = String(req.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim())
  const out: HeaderBag = {}
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.includes(name)) continue
    out[name] = value
  }
  out.connection = 'upgrade'
  out.upgrade = req.headers.upgrade
  if (!preserveHost) out.host = targetHost
  return setForwarded(out, req.socket as ClientSocket, req.headers.host, trust)
}

function statusLine (status: number, message: string | undefined): string {
  return `HTTP/1.1 ${status} ${message ?? httpReason(status)}\r\n`
}

/** Upstream response headers as raw lines; on a refusal, hop-by-hop ones are dropped (the decoded body ends with the socket). */
function rawHeaderLines (raw: string[], refusal: boolean): string {
  let out = ''
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (refusal ? HOP_BY_HOP.has(name) : name === 'keep-alive' || name.startsWith('proxy-')) continue
    if (/[\r\n]/.test(raw[i + 1])) continue
    out += `${raw[i]}: ${raw[i + 1]}\r\n`
  }
  return out
}

/** A JSON answer written straight on a socket that will not be upgraded (with `headers`, e.g. Retry-After), then the socket ends. */
export function answer (socket: Duplex, status: number, body: object, headers?: Record<string, string>): void {
  if (socket.destroyed) return
  const json = JSON.stringify(body)
  let extra = ''
  if (headers !== undefined) for (const [name, value] of Object.entries(headers)) if (!/[\r\n]/.test(name + value)) extra += `${name}: ${value}\r\n`
  socket.end(`${statusLine(status, undefined)}${extra}content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`)
}

function noop (): void {}
