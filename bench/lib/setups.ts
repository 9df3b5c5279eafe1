// The proxy setups under test, each built inside its own child process (see child.ts).
import { existsSync } from 'node:fs'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify'
import replyFrom from '@fastify/reply-from'
import { Agent } from 'undici'
import httpProxy from '@fastify/http-proxy'
import loadBalancer, { passThroughBodies } from '../../plugins/load-balancer.js'
import metrics from '../../plugins/metrics.js'
import { COMMON_METHODS } from '../../lib/routes/methods.js'

export type SetupRole = 'gateway' | 'reply-from' | 'http-proxy' | 'access-ab' | 'direct-ab'
export interface Started { port: number, info: string }

const METHODS = COMMON_METHODS
const GATEWAY_TS = new URL('../../plugins/gateway.ts', import.meta.url)
const CONFIG_TS = new URL('../../lib/config/index.ts', import.meta.url)

export async function startSetup (role: SetupRole, upstreams: string[]): Promise<Started> {
  if (upstreams.length === 0) throw new Error('no upstreams given')
  switch (role) {
    case 'gateway': return await gateway(upstreams)
    case 'reply-from': return await bareReplyFrom(upstreams)
    case 'http-proxy': return await listen(await httpProxyApp(upstreams[0]), '@fastify/http-proxy, one upstream')
    case 'access-ab': return await accessLogAB(upstreams)
    case 'direct-ab': return await directAB(upstreams)
    default: throw new Error(`unknown role ${String(role)}`)
  }
}

async function listen (app: FastifyInstance, info: string): Promise<Started> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  return { port: (app.server.address() as AddressInfo).port, info }
}

/** The gateway config of the benchmark: one upstream `u` over both targets, round_robin, one route. */
export function gatewayConfig (upstreams: string[], port: number): Record<string, unknown> {
  return {
    node: { id: 'bench-gw', host: '127.0.0.1', port },
    upstreams: {
      u: { strategy: 'round_robin', targets: upstreams.map((url, i) => ({ id: `up-${i + 1}`, url })) },
    },
    routes: [{ path: '/', upstream: 'u' }],
    metrics: { path: '/metrics' },
  }
}

/** Through plugins/gateway.ts `startNode` when it loads (BENCH_GATEWAY=plugins forces the plugins). */
async function gateway (upstreams: string[]): Promise<Started> {
  let why = 'plugins/gateway.ts missing'
  if (process.env.BENCH_GATEWAY === 'plugins') why = 'BENCH_GATEWAY=plugins'
  else if (existsSync(GATEWAY_TS)) {
    try {
      const gw = await import(GATEWAY_TS.href) as { startNode: (config: unknown, opts: { logger: boolean }) => Promise<unknown> }
      const cfg = await import(CONFIG_TS.href) as { validateConfig: (raw: unknown) => unknown }
      const port = await freePort()
      const node = await gw.startNode(cfg.validateConfig(gatewayConfig(upstreams, port)), { logger: false })
      return { port: portOf(node) ?? port, info: 'plugins/gateway.ts startNode(validateConfig(config))' }
    } catch (err) {
      why = `plugins/gateway.ts failed: ${(err as Error).message.split('\n')[0]}`
    }
  }
  const app = Fastify({ logger: false })
  await app.register(metrics, {})
  await app.register(loadBalancer, {
    upstreams: { u: { strategy: 'round_robin', targets: upstreams.map((url, i) => ({ id: `up-${i + 1}`, url })) } },
  })
  await app.register(async (scope) => {
    passThroughBodies(scope)
    for (const url of ['/', '/*']) {
      scope.route({ method: [...METHODS], url, exposeHeadRoute: false, config: { upstream: 'u' }, handler: (_req, reply) => reply.proxy() })
    }
  })
  return await listen(app, `plugins/metrics.ts + plugins/load-balancer.ts directly (${why})`)
}

/**
 * One gateway node with the CLI's log (pino on the buffered destination, here /dev/null) serving /on/* and /off/*
 * (the same upstream, routes declared in code): only /on/* has the access-log hook (bench/access-log-ab.ts).
 */
async function accessLogAB (upstreams: string[]): Promise<Started> {
  const cfg = await import(CONFIG_TS.href) as typeof import('../../lib/config/index.js')
  const { gateway } = await import(GATEWAY_TS.href) as typeof import('../../plugins/gateway.js')
  const { nodeLog, addAccessLog } = await import('../../plugins/node-log.js')
  const config = cfg.validateConfig({ ...gatewayConfig(upstreams, 0), routes: [], log: { destination: '/dev/null' } })
  const log = nodeLog(config.log)
  const app = Fastify({ ...log.fastifyOptions })
  await app.register(gateway, { config })
  for (const on of [true, false]) {
    await app.register(async (scope) => {
      passThroughBodies(scope)
      if (on) addAccessLog(scope, log.destination)
      scope.route({ method: [...METHODS], url: `/${on ? 'on' : 'off'}/*`, exposeHeadRoute: false, config: { upstream: 'u' }, handler: (_req, reply) => reply.proxy() })
    })
  }
  return await listen(app, 'startNode\'s log: /on/* with the access log, /off/* without')
}

/** Bare reply-from as PEERS.md ran it: no `base`, round robin in getUpstream, retries off. */
async function bareReplyFrom (upstreams: string[]): Promise<Started> {
  const app = Fastify({ logger: false })
  await app.register(replyFrom, { disableRequestLogging: true })
  let next = 0
  const fromOptions = {
    getUpstream (): string {
      const origin = upstreams[next]
      next = next + 1 === upstreams.length ? 0 : next + 1
      return origin
    },
    retryDelay (): null { return null },
  }
  for (const url of ['/', '/*']) {
    app.route({ method: [...METHODS], url, exposeHeadRoute: false, handler: (_req, reply) => reply.from(undefined, fromOptions) })
  }
  return await listen(app, '@fastify/reply-from, no base, round robin in getUpstream')
}

async function httpProxyApp (upstream: string): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(httpProxy, { upstream })
  return app
}

function portOf (node: unknown): number | undefined {
  const candidates = [node, (node as { app?: unknown } | null)?.app, (node as { fastify?: unknown } | null)?.fastify]
  for (const c of candidates) {
    const addr = (c as { server?: { address?: () => unknown } } | null)?.server?.address?.()
    if (addr !== null && typeof addr === 'object' && typeof (addr as AddressInfo).port === 'number') return (addr as AddressInfo).port
  }
  return undefined
}

/** A free port on 127.0.0.1 (the bench's servers and generators only). */
export async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as AddressInfo
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade'])

/** The least an undici handler does to proxy a response: head parsed, body gathered, one reply.send(). */
class Direct {
  chunks: Buffer[] = []
  status = 0
  headers: Record<string, string | string[]> = {}
  readonly reply: FastifyReply
  constructor (reply: FastifyReply) { this.reply = reply }
  onConnect (): void {}
  onHeaders (status: number, raw: Buffer[]): boolean {
    this.status = status
    const h = this.headers
    for (let i = 0; i < raw.length; i += 2) {
      const k = raw[i].toString('latin1').toLowerCase()
      if (HOP.has(k)) continue
      const v = raw[i + 1].toString('latin1')
      const cur = h[k]
      if (cur === undefined) h[k] = v
      else if (Array.isArray(cur)) cur.push(v)
      else h[k] = [cur, v]
    }
    return true
  }
  onData (c: Buffer): boolean { this.chunks.push(c); return true }
  onComplete (): void {
    const body = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks)
    void this.reply.code(this.status).headers(this.headers).send(body)
  }
  onError (err: Error): void { if (!this.reply.sent) void this.reply.code(502).send({ error: err.message }) }
}

/** Bare reply-from on /rf/* and a bare undici dispatch on /direct/* (bench/direct-ab.ts): what reply-from's per-request work costs. */
async function directAB (upstreams: string[]): Promise<Started> {
  const app = Fastify({ logger: false })
  await app.register(replyFrom, { disableRequestLogging: true })
  const agent = new Agent()
  let next = 0
  const pick = (): string => { const o = upstreams[next]; next = next + 1 === upstreams.length ? 0 : next + 1; return o }
  const fromOptions = { getUpstream: pick, retryDelay (): null { return null } }
  app.route({ method: ['GET'], url: '/rf/*', handler: (_req, reply) => reply.from(undefined, fromOptions) })
  app.route({
    method: ['GET'], url: '/direct/*', handler: (req, reply) => {
      const origin = pick()
      const headers: Record<string, string | string[] | undefined> = {}
      const src = req.headers
      for (const k in src) if (!HOP.has(k)) headers[k] = src[k]
      headers.host = origin.slice(7)
      agent.dispatch({ origin, path: req.url, method: req.method as 'GET', headers, body: null }, new Direct(reply))
    },
  })
  return await listen(app, 'bare reply-from on /rf/*, a bare undici dispatch on /direct/*')
}
