// Rules JSON Schema cannot express: references between sections, uniqueness, and values that must agree.
import { tokenProblem } from '../admin-auth.js'
import { joinPath, type ConfigIssue } from './config-error.js'
import { formatDuration } from './duration.js'
import type { GatewayConfig, GatewayConfigInput } from './schema.js'
import { ruleIssues } from '../monitor/rule.js'

type Seg = Array<string | number>

/**
 * `cfg` has defaults and ms durations but no derived values yet (route strategy, timeouts, ...);
 * `input` is what the user wrote, to tell a value they set from a default.
 */
export function crossCheck (cfg: GatewayConfig, input: GatewayConfigInput): ConfigIssue[] {
  const issues: ConfigIssue[] = []
  const add = (path: Seg, message: string): void => { issues.push({ path: joinPath(path), message }) }
  const names = Object.keys(cfg.upstreams)
  const known = names.length === 0 ? 'none are defined' : `known: ${names.join(', ')}`
  const unknownUpstream = (name: string): string => `unknown upstream "${name}" (${known})`
  const routesByUpstream = new Map<string, GatewayConfig['routes']>()
  for (const r of cfg.routes) {
    for (const name of routeUpstreams(r)) {
      const list = routesByUpstream.get(name)
      if (list === undefined) routesByUpstream.set(name, [r])
      else list.push(r)
    }
  }

  // a token's problem is named without quoting it: config errors reach logs
  for (const at of [['admin', 'token'], ['metrics', 'token']] as const) {
    const token = cfg[at[0]].token
    const problem = token === undefined ? undefined : tokenProblem(token)
    if (problem !== undefined) add([...at], problem)
    const listen = cfg[at[0]].listen
    const port = listen === undefined ? 0 : Number(listen.slice(listen.lastIndexOf(':') + 1))
    if (port > 65535) add([at[0], 'listen'], 'port must be 65535 or less')
    if (port !== 0 && port === cfg.node.port) add([at[0], 'listen'], `is the traffic port (node.port ${port}): give it a port of its own, or leave it out to serve on the traffic port`)
  }

  cfg.notifications.forEach((n, i) => {
    if (n.type === 'webhook' && n.url === undefined) add(['notifications', i, 'url'], 'a webhook notifier needs a url')
  })

  checkAlerts(cfg, add, names, unknownUpstream)

  if (cfg.node.http2 && cfg.node.tls === undefined) add(['node', 'http2'], 'needs node.tls (browsers speak HTTP/2 over TLS only)')
  for (const [name, u] of Object.entries(cfg.upstreams)) {
    const at = ['upstreams', name]
    if (u.tls !== undefined && (u.tls.cert === undefined) !== (u.tls.key === undefined)) add([...at, 'tls', u.tls.cert === undefined ? 'cert' : 'key'], 'cert and key go together')
    const raw = input.upstreams?.[name]
    const targets = u.targets ?? []
    if (targets.length === 0 && u.discovery === undefined) add([...at, 'targets'], 'needs at least one target (or set discovery)')
    const firstIndex = new Map<string, number>()
    targets.forEach((t, i) => {
      const first = firstIndex.get(t.id)
      if (first === undefined) firstIndex.set(t.id, i)
      else add([...at, 'targets', i, 'id'], `duplicate target id "${t.id}" (also targets[${first}])`)
    })
    if (u.hashOn !== undefined && u.strategy !== 'consistent_hash' &&
      !(routesByUpstream.get(name) ?? []).some(r => r.strategy === 'consistent_hash' && r.hashOn === undefined)) {
      add([...at, 'hashOn'], `is only used by strategy consistent_hash (this upstream uses ${u.strategy})`)
    }
    checkFailover(u.failover, [...at, 'failover'], name, add, unknownUpstream, cfg)

    const a = u.healthCheck.active
    const rawA = raw?.healthCheck?.active
    if (a !== undefined && rawA !== undefined) {
      if (a.timeout !== undefined && a.timeout > a.interval) {
        add([...at, 'healthCheck', 'active', 'timeout'], `${formatDuration(a.timeout)} is longer than interval ${formatDuration(a.interval)}`)
      }
      if (a.type === 'tcp') {
        for (const k of ['method', 'path', 'expectedStatuses', 'host'] as const) {
          if (rawA[k] !== undefined) add([...at, 'healthCheck', 'active', k], 'is only used by type http (this probe is tcp)')
        }
      }
    }
    if (u.healthCheck.recovery !== undefined && u.healthCheck.recovery.webhook === undefined) {
      add([...at, 'healthCheck', 'recovery', 'webhook'], 'is required: the webhook is the recovery action a config can name')
    }
    const p = u.healthCheck.passive
    if (p !== undefined && p.baseEjectionTime > p.maxEjectionTime) {
      add([...at, 'healthCheck', 'passive', 'maxEjectionTime'], `must be at least baseEjectionTime (${formatDuration(p.baseEjectionTime)})`)
    }
    const cb = u.circuitBreaker
    if (cb !== undefined && cb.openDuration > cb.maxOpenDuration) {
      add([...at, 'circuitBreaker', 'maxOpenDuration'], `must be at least openDuration (${formatDuration(cb.openDuration)})`)
    }
  }

  checkRules(cfg.rateLimit.default, ['rateLimit', 'default'], input.rateLimit?.default, add)
  const reserved = reservedPaths(cfg)
  // routes by normalized path: a duplicate is looked up among the routes of its own path only (linear overall)
  const seen = new Map<string, Array<{ methods?: string[], scope: string, index: number }>>()
  const hasUpstream = (name: string): boolean => Object.hasOwn(cfg.upstreams, name) // own keys only: `toString` is no upstream
  cfg.routes.forEach((r, i) => {
    const at: Seg = ['routes', i]
    if (r.upstream === undefined && r.split === undefined) add([...at, 'upstream'], 'a route needs upstream or split')
    if (r.upstream !== undefined && r.split !== undefined) add([...at, 'split'], 'set upstream or split, not both')
    if (r.upstream !== undefined && !hasUpstream(r.upstream)) add([...at, 'upstream'], unknownUpstream(r.upstream))
    r.split?.forEach((side, j) => {
      if (!hasUpstream(side.upstream)) add([...at, 'split', j, 'upstream'], unknownUpstream(side.upstream))
      const first = r.split!.findIndex(x => x.upstream === side.upstream)
      if (first !== j) add([...at, 'split', j, 'upstream'], `"${side.upstream}" is already split[${first}]`)
    })
    if (r.stripPrefix && r.rewritePrefix !== undefined) add([...at, 'rewritePrefix'], 'set stripPrefix or rewritePrefix, not both')
    const primary = r.upstream ?? r.split?.[0]?.upstream
    const u = primary === undefined || !hasUpstream(primary) ? undefined : cfg.upstreams[primary]
    const strategy = r.strategy ?? u?.strategy
    if (r.hashOn !== undefined && strategy !== 'consistent_hash' && r.split === undefined) {
      add([...at, 'hashOn'], `is only used by strategy consistent_hash or a split (this route uses ${strategy ?? 'round_robin'})`)
    }
    if (r.failover !== undefined && primary !== undefined) checkFailover(r.failover, [...at, 'failover'], primary, add, unknownUpstream, cfg)
    checkRules(r.rateLimit, [...at, 'rateLimit'], input.routes?.[i]?.rateLimit, add)
    const path = r.path.length > 1 ? r.path.replace(/\/+$/, '') || '/' : r.path
    const clash = reserved.find(x => path === x || path.startsWith(x + '/'))
    if (clash !== undefined && r.hosts === undefined) add([...at, 'path'], `collides with the gateway's own route ${clash}`)
    // two routes with one path differ by their hosts or match conditions, or they are duplicates
    const scope = r.hosts === undefined && r.match?.headers === undefined ? '' : JSON.stringify([r.hosts?.map(h => h.toLowerCase()).sort() ?? null, r.match?.headers === undefined ? null : Object.entries(r.match.headers).map(([k, v]) => [k.toLowerCase(), v]).sort()])
    const same = seen.get(path)
    const dup = same?.find(s => s.scope === scope && overlap(s.methods, r.methods))
    if (dup !== undefined) add([...at, 'path'], `duplicates routes[${dup.index}] (${path})`)
    if (same === undefined) seen.set(path, [{ methods: r.methods, scope, index: i }])
    else same.push({ methods: r.methods, scope, index: i })
  })
  return issues
}

type Failover = Partial<GatewayConfig['upstreams'][string]['failover']>
function checkFailover (f: Failover, at: Seg, self: string, add: (p: Seg, m: string) => void,
  unknownUpstream: (n: string) => string, cfg: GatewayConfig): void {
  if (f.fallback !== undefined) {
    if (f.fallback === self) add([...at, 'fallback'], `must name another upstream, not "${self}" itself`)
    else if (!Object.hasOwn(cfg.upstreams, f.fallback)) add([...at, 'fallback'], unknownUpstream(f.fallback))
  }
  if (f.perTryTimeout !== undefined && f.timeout !== undefined && f.perTryTimeout > f.timeout) {
    add([...at, 'perTryTimeout'], `${formatDuration(f.perTryTimeout)} is longer than timeout ${formatDuration(f.timeout)}`)
  }
}

type Rules = GatewayConfig['rateLimit']['default']
function checkRules (rules: Rules, at: Seg, raw: unknown, add: (p: Seg, m: string) => void): void {
  (rules ?? []).forEach((rule, i) => {
    const ruleAt = Array.isArray(raw) ? [...at, i] : at
    if (rule.cost > rule.limit) add([...ruleAt, 'cost'], `${rule.cost} is more than limit ${rule.limit}: no request could pass`)
  })
}

/** Paths the gateway serves itself; a proxied route may not shadow them. */
function reservedPaths (cfg: GatewayConfig): string[] {
  const out = ['/health', '/ready']
  // a listener of their own leaves the traffic port's paths free
  if (cfg.admin.token !== undefined && cfg.admin.listen === undefined) out.push(cfg.admin.prefix)
  if (cfg.metrics.enabled && cfg.metrics.listen === undefined) out.push(cfg.metrics.path)
  return out
}

/** The upstreams a route sends to: its upstream, or each side of its split. */
export function routeUpstreams (r: GatewayConfig['routes'][number]): string[] {
  return r.upstream !== undefined ? [r.upstream] : (r.split ?? []).map(s => s.upstream)
}

function overlap (a?: string[], b?: string[]): boolean {
  if (a === undefined || b === undefined) return true
  return a.some(m => b.includes(m))
}

/** Alert rules: a condition that parses, unique names, a known upstream; webhooks need a url. */
function checkAlerts (cfg: GatewayConfig, add: (path: Seg, message: string) => void, upstreams: string[], unknownUpstream: (name: string) => string): void {
  const seen = new Map<string, number>()
  cfg.alerts.rules?.forEach((r, i) => {
    const at = ['alerts', 'rules', i]
    for (const [key, message] of ruleIssues(r)) add([...at, key], message)
    const first = seen.get(r.name)
    if (first === undefined) seen.set(r.name, i)
    else add([...at, 'name'], `duplicate rule name "${r.name}" (also rules[${first}])`)
    if (r.upstream !== undefined && !upstreams.includes(r.upstream)) add([...at, 'upstream'], unknownUpstream(r.upstream))
  })
  cfg.alerts.alerters.forEach((a, i) => {
    if (a.type === 'webhook' && a.url === undefined) add(['alerts', 'alerters', i, 'url'], 'a webhook alerter needs a url')
  })
}
