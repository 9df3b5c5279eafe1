import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createHealth, HealthRegistry, type Health, type HealthCheckOptions, type HealthEvent, type HintOutcome, type ProbeCoordinator, type ProbeResult, type RecoveryAction, type RemoteHint } from '../lib/health/index.js'
import { createHealthMetrics } from '../lib/metrics/health-metrics.js'
import type { TryObserver, UpstreamEntry } from '../lib/upstream/registry.js'

/** `upstreams.<name>.healthCheck` as the config gives it (normalized) or code writes it (ms). */
export interface UpstreamHealthOptions {
  active?: HealthCheckOptions['active'] & { expectedStatuses?: ReadonlyArray<number | readonly [number, number]> }
  passive?: Omit<NonNullable<HealthCheckOptions['passive']>, 'failureStatuses'> & { failureStatuses?: ReadonlyArray<number | readonly [number, number]> }
  slowStart?: number
  recovery?: Omit<NonNullable<HealthCheckOptions['recovery']>, 'action'>
  /** /ready waits for this upstream (default true). */
  required?: boolean
}

export interface HealthCheckPluginOptions {
  upstreams?: Record<string, { healthCheck?: UpstreamHealthOptions }>
  /** Recovery actions given in code, by upstream name (instead of, or besides, a webhook). */
  recoveryActions?: Record<string, RecoveryAction>
  drain?: { delay?: number }
  healthPath?: string
  readyPath?: string
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
  const metrics = fastify.hasDecorator('gatewayMetrics')
    ? createHealthMetrics(fastify.gatewayMetrics.registry, lb.upstreams, registry)
    : undefined
  const checks = new Map<string, { health: Health, observer: TryObserver, entry: UpstreamEntry }>()
  // the options each upstream runs with: the boot config's, then what configure() sets
  const options = new Map<string, UpstreamHealthOptions | undefined>()
  for (const [name, u] of Object.entries(opts.upstreams ?? {})) options.set(name, u.healthCheck)
  let draining = false
  let closed = false
  let coordinator: ProbeCoordinator | undefined
  const required = (name: string): boolean => options.get(name)?.required ?? true

  // Each transition is logged once, where it happens: never per request.
  registry.subscribe((e) => {
    if (e.type === 'transition') fastify.log.info({ upstream: e.upstream, target: e.target.id, from: e.from, to: e.to, reason: e.reason }, 'target status changed')
    else if (e.type === 'ejected') fastify.log.warn({ upstream: e.upstream, target: e.target.id, reason: e.reason, forMs: e.until - e.at, ejectionCount: e.ejectionCount }, 'target ejected')
    else if (e.type === 'hinted') fastify.log.info({ upstream: e.upstream, target: e.target.id, kind: e.kind, from: e.from, forMs: e.until - e.at }, 'target kept out on another node\'s hint')
    else if (e.type === 'recovery_result' && !e.ok) fastify.log.warn({ upstream: e.upstream, target: e.target.id, error: e.error }, 'recovery action failed')
  })

  /** Start an upstream's checks with its options; the running ones stop only once the new ones are built (a throw keeps them). */
  function attach (entry: UpstreamEntry, keepState = false): void {
    if (!keepState) detach(entry.name)
    const cfg = options.get(entry.name) ?? {}
    const action = opts.recoveryActions?.[entry.name]
    const health = createHealth(entry.pool, {
      active: cfg.active === undefined || entry.tls === undefined ? cfg.active : { ...cfg.active, tls: entry.tls },
      passive: cfg.passive === undefined ? undefined : { ...cfg.passive, failureStatuses: expand(cfg.passive.failureStatuses) },
      slowStart: cfg.slowStart,
      recovery: cfg.recovery === undefined ? undefined : { ...cfg.recovery, action },
    }, { registry, onProbe: metrics?.onProbe, coordinator })
    const observer: TryObserver = {
      onTryStart: health.onRequestStart,
      onTryEnd (target, r, now) {
        if (r.aborted) return
        health.onResult(target, r.error !== undefined
          ? { ok: false, error: (r.error as { code?: string }).code ?? r.error.message }
          : { ok: true, status: r.statusCode }, now)
      },
    }
    detach(entry.name, keepState)
    entry.observers.push(observer)
    checks.set(entry.name, { health, observer, entry })
    health.start()
  }

  /** Stop an upstream's checks; `keepState` keeps its health records (a restart with new options). */
  function detach (name: string, keepState = false): void {
    const c = checks.get(name)
    if (c === undefined) return
    checks.delete(name)
    const i = c.entry.observers.indexOf(c.observer)
    if (i !== -1) c.entry.observers.splice(i, 1)
    c.health.close().catch((err: unknown) => { fastify.log.warn({ err }, 'closing health checks failed') })
    if (!keepState) registry.delete(name)
  }

  const onAdded = (e: UpstreamEntry): void => { attach(e) }
  const onRemoved = (e: UpstreamEntry): void => { detach(e.name) }
  lb.upstreams.on('added', onAdded)
  lb.upstreams.on('removed', onRemoved)

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
        const req = required(e.name)
        upstreams[e.name] = { required: req, eligible, total: e.pool.size }
        if (req && eligible === 0) ready = false
      }
      return { ready, draining, upstreams }
    },
    subscribe: (fn) => registry.subscribe(fn),
    configure (name, healthCheck) {
      const before = options.get(name)
      if (JSON.stringify(before ?? {}) === JSON.stringify(healthCheck ?? {})) return false
      options.set(name, healthCheck)
      const c = checks.get(name)
      if (c === undefined || closed) return false // attached later with these options
      try {
        attach(c.entry, true)
      } catch (err) {
        // the old checks still run: keep their options, so the next good config is compared with them
        options.set(name, before)
        throw err
      }
      fastify.log.info({ upstream: name }, 'health checks restarted with new options')
      return true
    },
    setProbeCoordinator (c) {
      if (c === coordinator) return
      coordinator = c
      if (closed) return
      for (const [name, check] of [...checks]) if (options.get(name)?.active?.shared === true) attach(check.entry, true)
    },
    applySharedProbe (upstream, targetId, result) {
      const active = checks.get(upstream)?.health.active
      const target = checks.get(upstream)?.entry.pool.get(targetId)
      if (active === undefined || target === undefined || active.options.shared !== true) return false
      active.applyShared(target, result)
      return true
    },
    applyHint (upstream, targetId, hint) {
      const c = checks.get(upstream)
      const target = c?.entry.pool.get(targetId)
      if (c === undefined || target === undefined) return 'unknown_target'
      return c.health.applyHint(target, hint)
    },
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
  fastify.addHook('onReady', async () => {
    for (const e of lb.upstreams) if (!checks.has(e.name)) attach(e)
  })
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
    closed = true
    fastify.server.off('request', closeAfterResponse)
    lb.upstreams.off('added', onAdded)
    lb.upstreams.off('removed', onRemoved)
    await Promise.all([...checks.values()].map(async (c) => await c.health.close()))
    checks.clear()
  })
}

/** While draining: answer with `Connection: close` and close the socket after the response. */
function closeAfterResponse (_req: unknown, res: { shouldKeepAlive?: boolean }): void {
  res.shouldKeepAlive = false
}

/** [[502, 504]] -> [502, 503, 504]: the config's ranges as the detector's status list. */
function expand (spec: ReadonlyArray<number | readonly [number, number]> | undefined): number[] | undefined {
  if (spec === undefined) return undefined
  const out: number[] = []
  for (const s of spec) {
    if (typeof s === 'number') out.push(s)
    else for (let c = s[0]; c <= s[1]; c++) out.push(c)
  }
  return out
}

export default fp(healthCheckPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-health-check',
  dependencies: ['fastify-ha-gateway-load-balancer'],
  decorators: { fastify: ['loadBalancer'] },
})
