import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { HealthRegistry, type HealthEvent, type HintOutcome, type ProbeCoordinator, type ProbeResult, type RecoveryAction, type RemoteHint } from '../lib/health/index.js'
import { HealthSupervisor, type UpstreamHealthOptions } from '../lib/health/supervisor.js'
import { createHealthMetrics } from '../lib/metrics/health-metrics.js'
import { optional } from './optional.js'

export type { UpstreamHealthOptions }

export interface HealthCheckPluginOptions {
  upstreams?: Record<string, { healthCheck?: UpstreamHealthOptions }>
  /** Recovery actions given in code, by upstream name (instead of, or besides, a webhook). */
  recoveryActions?: Record<string, RecoveryAction>
  drain?: { delay?: number }
  healthPath?: string
  readyPath?: string
  /**
   * The node's own coordinator (node.workers: only one worker probes): every upstream's active checks share
   * through it, before the cluster's (an upstream with `active.shared` and Redis). Absent: as without workers.
   */
  probeCoordinator?: ProbeCoordinator
}

export interface GatewayHealth {
  readonly registry: HealthRegistry
  readonly draining: boolean
  /** Turn not-ready now (the first step of a drain). */
  startDrain (): void
  readiness (): { ready: boolean, draining: boolean, upstreams: Record<string, { required: boolean, eligible: number, total: number }> }
  /** Subscribe to transitions, ejections, trials, re-admissions, hints and recovery attempts. */
  subscribe (fn: (e: HealthEvent) => void): () => void
  /**
   * Set an upstream's `healthCheck` options at run time (config sync calls this). When they differ from
   * the running ones and the upstream's checks run, they restart with the new options; the targets'
   * health records (verdicts, ejections, hints) are kept. Returns whether anything restarted.
   */
  configure (upstream: string, healthCheck: UpstreamHealthOptions | undefined): boolean
  /**
   * Another node's hint about a target (cluster-shared health): keep it out until `hint.until`
   * (this node's clock), unless this node's own state says otherwise; see lib/health/index.ts applyHint.
   */
  applyHint (upstream: string, target: string, hint: RemoteHint): HintOutcome | 'unknown_target'
  /** Shared probing: who probes upstreams whose `active.shared` is set (the cluster-health plugin sets it when Redis is configured). */
  setProbeCoordinator (coordinator: ProbeCoordinator | undefined): void
  /** A probe result another node shared: fed to the upstream's active checks; false when nothing took it. */
  applySharedProbe (upstream: string, target: string, result: ProbeResult): boolean
}

declare module 'fastify' {
  interface FastifyInstance {
    gatewayHealth: GatewayHealth
  }
}

async function healthCheckPlugin (fastify: FastifyInstance, opts: HealthCheckPluginOptions): Promise<void> {
  const lb = fastify.loadBalancer
  const registry = new HealthRegistry()
  const gm = optional(fastify, 'gatewayMetrics')
  const metrics = gm === undefined ? undefined : createHealthMetrics(gm.registry, lb.upstreams, registry)
  // the checks of each upstream (lib/health/supervisor.ts); this plugin adds the routes, the drain and the log
  const checks = new HealthSupervisor({
    upstreams: lb.upstreams,
    registry,
    options: opts.upstreams,
    probeCoordinator: opts.probeCoordinator,
    recoveryActions: opts.recoveryActions,
    onProbe: metrics?.onProbe,
    onCloseError: (err) => { fastify.log.warn({ err }, 'closing health checks failed') },
  })
  let draining = false

  // Each transition is logged once, where it happens: never per request.
  registry.subscribe((e) => {
    if (e.type === 'transition') fastify.log.info({ upstream: e.upstream, target: e.target.id, from: e.from, to: e.to, reason: e.reason }, 'target status changed')
    else if (e.type === 'ejected') fastify.log.warn({ upstream: e.upstream, target: e.target.id, reason: e.reason, forMs: e.until - e.at, ejectionCount: e.ejectionCount }, 'target ejected')
    else if (e.type === 'hinted') fastify.log.info({ upstream: e.upstream, target: e.target.id, kind: e.kind, from: e.from, forMs: e.until - e.at }, 'target kept out on another node\'s hint')
    else if (e.type === 'recovery_result' && !e.ok) fastify.log.warn({ upstream: e.upstream, target: e.target.id, error: e.error }, 'recovery action failed')
  })

  const health: GatewayHealth = {
    registry,
    get draining () { return draining },
    startDrain () {
      if (draining) return
      draining = true
      // Keep-alive clients move to new connections while we still accept them (drain.delay), so when
      // the listener closes no idle kept-alive socket is reset under a request and none meets Fastify's
      // closing 503. Listener added only now: zero cost on the request path before a drain.
      fastify.server.prependListener('request', closeAfterResponse)
    },
    readiness () {
      const now = Date.now()
      const upstreams: Record<string, { required: boolean, eligible: number, total: number }> = {}
      let ready = !draining
      for (const e of lb.upstreams) {
        let eligible = 0
        for (const t of e.pool.targets) if (t.isEligible(now)) eligible++
        const req = checks.required(e.name)
        upstreams[e.name] = { required: req, eligible, total: e.pool.size }
        if (req && eligible === 0) ready = false
      }
      return { ready, draining, upstreams }
    },
    subscribe: (fn) => registry.subscribe(fn),
    configure (name, healthCheck) {
      const restarted = checks.configure(name, healthCheck)
      if (restarted) fastify.log.info({ upstream: name }, 'health checks restarted with new options')
      return restarted
    },
    setProbeCoordinator: (c) => { checks.setProbeCoordinator(c) },
    applySharedProbe: (upstream, target, result) => checks.applySharedProbe(upstream, target, result),
    applyHint: (upstream, target, hint) => checks.applyHint(upstream, target, hint),
  }
  fastify.decorate('gatewayHealth', health)

  // Liveness: the process serves. Both routes answer HEAD (exposeHeadRoute).
  fastify.get(opts.healthPath ?? '/health', { logLevel: 'warn' }, async () => ({ status: 'ok' }))
  fastify.get(opts.readyPath ?? '/ready', { logLevel: 'warn' }, async (_request, reply) => {
    const r = health.readiness()
    reply.code(r.ready ? 200 : 503)
    return { status: r.ready ? 'ready' : 'not_ready', ...r }
  })

  // Probes start once the app is ready, so a failed boot leaves no timers behind.
  fastify.addHook('onReady', async () => { checks.start() })
  // Drain: 1. not ready, 2. drain.delay for the load balancers in front to notice;
  // Fastify then stops accepting and finishes requests in flight (3) before onClose (4).
  // (startNode drains before close(); this covers a plain app.close(), where Fastify already refuses new requests.)
  fastify.addHook('preClose', async () => {
    if (draining) return
    health.startDrain()
    const delay = opts.drain?.delay ?? 0
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
  })
  fastify.addHook('onClose', async () => {
    fastify.server.off('request', closeAfterResponse)
    await checks.close()
  })
}

/** While draining: answer with `Connection: close` and close the socket after the response. */
function closeAfterResponse (_req: unknown, res: { shouldKeepAlive?: boolean }): void {
  res.shouldKeepAlive = false
}

export default fp(healthCheckPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-health-check',
  dependencies: ['fastify-ha-gateway-load-balancer'],
  decorators: { fastify: ['loadBalancer'] },
})
