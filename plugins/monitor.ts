// The monitor plugin: publishes this node's summary with its heartbeat, serves the cluster metrics,
// the alerts and the dashboard, and runs the cluster's AlertManager (one evaluator per cluster).
// node.workers (`node`): one worker of the node evaluates, on the node's summary (every worker's, merged),
// and {admin}/cluster/metrics shows the node's figures whichever worker answers.
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { optional } from './optional.js'
import { Ticker } from '../lib/cluster/ticker.js'
import { GatewayError } from '../lib/errors.js'
import { createProxyMetrics } from '../lib/metrics/proxy-metrics.js'
import { aggregate, type ClusterMetricsView, type NodeInput } from '../lib/monitor/aggregate.js'
import { AlertManager } from '../lib/monitor/alert-manager.js'
import { MemoryAlertStore, RedisAlertStore } from '../lib/monitor/alert-store.js'
import { createAlerters, type AlerterConfig } from '../lib/monitor/alerters.js'
import { DASHBOARD_CSP, DASHBOARD_HTML } from '../lib/monitor/dashboard-page.js'
import { RateHistory } from '../lib/monitor/history.js'
import { compileRules, type AlertRuleConfig } from '../lib/monitor/rule.js'
import { NodeSampler, type NodeSummary } from '../lib/monitor/summary.js'
import type { NodeScope } from '../lib/monitor/node-scope.js'
import { bearerGuard } from './auth-guard.js'
import { ownListener } from './own-listener.js'

export interface MonitorOptions {
  /** Admin route prefix (default /gateway). */
  prefix?: string
  /** `host:port` of the admin listener (admin.listen); absent: the app's own listener. */
  listen?: string
  /** Admin bearer token; with none, no route is registered (alerts still run). */
  token?: string
  /** ms between two samples of this node (default: the heartbeat, 1 s). */
  sampleInterval?: number
  alerts?: { interval?: number, rules?: AlertRuleConfig[], alerters?: AlerterConfig[] }
  clusterName?: string
  /** This process is one worker of a node (node.workers): the node evaluates and is shown as one (lib/workers/monitor-scope.ts). */
  node?: NodeScope
}

async function monitorPlugin (fastify: FastifyInstance, opts: MonitorOptions): Promise<void> {
  const lb = fastify.loadBalancer
  const cluster = optional(fastify, 'cluster')
  const log = fastify.log.child({ component: 'monitor' })
  const gm = optional(fastify, 'gatewayMetrics')
  const counters = gm === undefined ? undefined : createProxyMetrics(gm.registry, lb.upstreams)
  const sampler = new NodeSampler({ counters: () => counters?.all() ?? [], upstreams: lb.upstreams })
  const history = new RateHistory()
  const nodeId = cluster?.nodeId ?? 'gateway'
  const clusterName = opts.clusterName ?? cluster?.context.keys.name ?? 'fastify-ha-gateway'

  // notable events for the dashboard (retries come in storms and are left out)
  lb.notifications.add({
    notify (e) {
      if (e.type === 'retry') return
      const target = 'target' in e ? e.target : undefined
      if (e.type === 'circuit_opened' || e.type === 'circuit_closed') cluster?.announce()
      const detail = e.type === 'fallback_used' ? `${e.fallback} (${e.cause})` : e.type === 'retries_exhausted' ? e.why : e.type === 'circuit_opened' ? e.cause : undefined
      sampler.noteEvent({ t: e.timestamp, type: e.type, upstream: e.upstream, target, detail })
    },
  })
  const health = optional(fastify, 'gatewayHealth')
  if (health !== undefined) {
    health.registry.subscribe((e) => {
      // the others see a target's new status at once, not a heartbeat later (transitions are rare)
      if (e.type === 'transition' || e.type === 'ejected') cluster?.announce()
      if (e.type === 'transition') sampler.noteEvent({ t: e.at, type: `target_${e.to}`, upstream: e.upstream, target: e.target.id, detail: e.reason })
      else if (e.type === 'ejected') sampler.noteEvent({ t: e.at, type: 'target_ejected', upstream: e.upstream, target: e.target.id, detail: e.reason })
    })
  }

  const scope = opts.node
  scope?.contribute(() => sampler.current())
  const view = (self = sampler.current()): ClusterMetricsView => {
    const nodes: NodeInput[] = (cluster?.nodes() ?? []).map((n) => ({
      id: n.id,
      address: `${n.address}:${n.port}`,
      status: n.status === 'draining' ? 'draining' : 'ready',
      configVersion: n.configVersion,
      lastSeen: n.lastSeen,
      summary: n.id === nodeId ? self : asSummary(n.summary),
    }))
    if (nodes.length === 0) nodes.push({ id: nodeId, address: '', status: 'ready', configVersion: 0, lastSeen: Date.now(), summary: self })
    return aggregate(nodes)
  }
  // the node's figures: with workers, every worker's summary merged (the primary gathers them); alone, this process's
  const nodeView = scope === undefined ? view : async (): Promise<ClusterMetricsView> => view(await scope.summary())

  // node.workers: the heartbeat (what the other nodes see of this one) and the dashboard's chart carry the node's
  // figures, every worker's merged, taken at each sample; this worker's own when they cannot be gathered
  let nodeLatest: NodeSummary | undefined
  const sampling = new Ticker(async () => {
    sampler.sample()
    if (scope === undefined) { history.add(view()); return }
    nodeLatest = await scope.summary().catch(() => undefined)
    history.add(view(nodeLatest))
  }, opts.sampleInterval ?? 1000, (err) => log.warn({ err }, 'monitor sample failed'))
  cluster?.setSummary(scope === undefined ? () => sampler.latest : () => nodeLatest ?? sampler.latest)

  const a = opts.alerts ?? {}
  let lastError = ''
  const rules = compileRules(a.rules)
  const manager = new AlertManager({
    nodeId,
    cluster: clusterName,
    rules,
    alerters: createAlerters(a.alerters, log),
    store: cluster?.redisEnabled === true ? new RedisAlertStore(cluster.context.link, clusterName) : scope?.alertStore ?? new MemoryAlertStore(),
    interval: a.interval ?? 10_000,
    // with workers a round the primary cannot gather for is skipped (logged): one worker's share is no basis for an alert
    metrics: nodeView,
    evaluates: scope?.evaluates,
    onError: (err) => {
      // once per distinct failure (a Redis outage would repeat it every interval)
      const msg = (err as Error).message
      if (msg !== lastError) log.warn({ err: msg }, 'alert evaluation failed')
      lastError = msg
    },
    onHolder: (holder) => {
      lastError = ''
      log.info({ evaluator: holder ?? null, self: holder === nodeId }, 'alert evaluator')
    },
  })

  fastify.addHook('onReady', async () => {
    sampling.start()
    manager.start()
  })
  fastify.addHook('preClose', async () => {
    cluster?.setSummary(undefined)
    await sampling.stop()
    await manager.close()
    sampler.close()
  })

  const token = opts.token
  if (token === undefined || token === '') return
  const prefix = (opts.prefix ?? '/gateway').replace(/\/$/, '')
  // the admin's guard (constant time, failures logged and throttled) and its listener when admin.listen is set
  const guard = bearerGuard(token, { what: 'admin' })
  const server = opts.listen === undefined ? fastify : ownListener(fastify, opts.listen, 'admin.listen')
  // a Redis failure is raised through Fastify: the route's error handler answers it
  const alerts = async (): Promise<Awaited<ReturnType<AlertManager['list']>>> => {
    try {
      return await manager.list()
    } catch (err) {
      if (err instanceof GatewayError) throw err // FHG_ERR_PRIMARY_UNAVAILABLE: the states are the primary's
      throw new GatewayError('REDIS_UNAVAILABLE', (err as Error).message)
    }
  }

  // a view the primary cannot gather for falls back to this worker's own figures
  const shown = async (): Promise<ClusterMetricsView> => await Promise.resolve(nodeView()).catch(() => view())
  server.get(`${prefix}/cluster/metrics`, { onRequest: guard, logLevel: 'warn' }, async () => await shown())
  server.get(`${prefix}/alerts`, { onRequest: guard, logLevel: 'warn' }, async () => await alerts())
  server.get(`${prefix}/dashboard/data`, { onRequest: guard, logLevel: 'warn' }, async (_request, reply) => {
    const list = await alerts()
    reply.header('cache-control', 'no-store')
    return { cluster: clusterName, self: nodeId, metrics: await shown(), alerts: list, history: history.points() }
  })
  // the page holds no data: served without the token, which it asks for and sends in a header
  server.get(`${prefix}/dashboard`, { logLevel: 'warn' }, async (_request, reply) => {
    reply.type('text/html; charset=utf-8')
      .header('content-security-policy', DASHBOARD_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
    return DASHBOARD_HTML
  })
}

/** Another node's summary as it came from Redis: used only if it has the expected shape. */
function asSummary (s: unknown): NodeSummary | undefined {
  if (typeof s !== 'object' || s === null) return undefined
  const o = s as Partial<NodeSummary>
  return typeof o.t === 'number' && typeof o.u === 'object' && o.u !== null && Array.isArray(o.ev) ? o as NodeSummary : undefined
}

export const monitor = fp(monitorPlugin, {
  fastify: '5.x',
  name: 'fastify-ha-gateway-monitor',
  dependencies: ['fastify-ha-gateway-load-balancer'],
  decorators: { fastify: ['loadBalancer'] },
})
export default monitor
