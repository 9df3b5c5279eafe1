// A schema-valid input -> the normalized config: defaults filled, durations in ms, per-route settings resolved.
import { hostname } from 'node:os'
import { joinPath, type ConfigIssue } from './config-error.js'
import { DEFAULTS } from './defaults.js'
import { parseDuration } from './duration.js'
import type { PathSegments } from './env.js'
import type { GatewayConfig, GatewayConfigInput, RetryOn } from './schema.js'
import type { StatusRange } from './schema-kit.js'

type AnySchema = Record<string, unknown>
type Obj = Record<string, unknown>

/** Walks value and schema together: fills `default`s (deep copies) and converts by `x-kind`. */
export function applySchema (schema: AnySchema, value: unknown, path: PathSegments, issues: ConfigIssue[]): unknown {
  switch (schema['x-kind']) {
    case 'duration':
      try {
        const ms = parseDuration(value as number | string)
        // "0s" passes the string pattern; the number branch refused 0 already
        if (schema['x-positive'] === true && !(ms > 0)) issues.push({ path: joinPath(path), message: `must be a duration longer than 0, got ${JSON.stringify(value)}` })
        return ms
      } catch (err) {
        issues.push({ path: joinPath(path), message: (err as Error).message })
        return value
      }
    case 'statuses':
      return mergeRanges((value as Array<number | string>).map(statusRange))
    case 'retryOn':
      return retryOn(value as Array<number | string>)
    case 'oneOrMany': {
      const item = ((schema.anyOf as AnySchema[])[0])
      const list = Array.isArray(value) ? value : [value]
      return list.map((v, i) => applySchema(item, v, Array.isArray(value) ? [...path, i] : path, issues))
    }
  }
  if (schema.anyOf !== undefined) {
    const branch = pickBranch(schema.anyOf as AnySchema[], value)
    return branch === undefined ? structuredClone(value) : applySchema(branch, value, path, issues)
  }
  if (Array.isArray(value)) {
    const items = schema.items as AnySchema | undefined
    return items === undefined ? structuredClone(value) : value.map((v, i) => applySchema(items, v, [...path, i], issues))
  }
  if (value !== null && typeof value === 'object') {
    const out: Obj = {}
    const props = schema.properties as Record<string, AnySchema> | undefined
    if (props !== undefined) {
      for (const [k, ps] of Object.entries(props)) {
        let v = (value as Obj)[k]
        if (v === undefined && 'default' in ps) v = structuredClone(ps.default)
        if (v !== undefined) out[k] = applySchema(ps, v, [...path, k], issues)
      }
      return out
    }
    const pattern = schema.patternProperties as Record<string, AnySchema> | undefined
    const each = pattern === undefined ? undefined : Object.values(pattern)[0]
    for (const [k, v] of Object.entries(value)) out[k] = each === undefined ? structuredClone(v) : applySchema(each, v, [...path, k], issues)
    return out
  }
  return value
}

/** The union branch a valid value took: same JSON type, and for objects, its required keys present. */
function pickBranch (branches: AnySchema[], value: unknown): AnySchema | undefined {
  const type = Array.isArray(value) ? 'array' : value === null ? 'null' : typeof value
  return branches.find(b => {
    const t = b.type === 'integer' ? 'number' : b.type
    if (t !== type) return false
    return type !== 'object' || ((b.required ?? []) as string[]).every(k => k in (value as Obj))
  })
}

/** 503 -> [503, 503]; "500-504" -> [500, 504]; "5xx" -> [500, 599]. */
export function statusRange (s: number | string): StatusRange {
  if (typeof s === 'number') return [s, s]
  if (s.endsWith('xx')) { const c = Number(s[0]) * 100; return [c, c + 99] }
  const [a, b] = s.split('-').map(Number)
  return b === undefined ? [a, a] : [Math.min(a, b), Math.max(a, b)]
}

/** Sorted, with overlapping and adjacent ranges joined: 502, 503, 504 -> [[502, 504]]. */
export function mergeRanges (ranges: StatusRange[]): StatusRange[] {
  const out: StatusRange[] = []
  for (const [a, b] of [...ranges].sort((x, y) => x[0] - y[0])) {
    const last = out[out.length - 1]
    if (last !== undefined && a <= last[1] + 1) last[1] = Math.max(last[1], b)
    else out.push([a, b])
  }
  return out
}

/** Whether a status falls in one of the ranges. */
export function statusIn (ranges: readonly StatusRange[], status: number): boolean {
  for (const [a, b] of ranges) if (status >= a && status <= b) return true
  return false
}

function retryOn (items: Array<number | string>): RetryOn {
  const r: RetryOn = { connectFailure: false, reset: false, timeout: false, statuses: [] }
  for (const it of items) {
    if (it === 'connect_failure') r.connectFailure = true
    else if (it === 'reset') r.reset = true
    else if (it === 'timeout') r.timeout = true
    else r.statuses.push(statusRange(it))
  }
  r.statuses = mergeRanges(r.statuses)
  return r
}

/** Values derived from other values, once defaults are in (see the schema descriptions). */
export function resolveDerived (cfg: GatewayConfig, input: GatewayConfigInput): void {
  cfg.node.id ??= `${hostname()}-${process.pid}`
  const { websocketIdle: _upgradesOnly, ...requestTimeouts } = cfg.proxy.timeouts
  for (const u of Object.values(cfg.upstreams)) {
    u.targets ??= []
    u.timeouts = { ...requestTimeouts, ...u.timeouts }
    if (u.hashOn !== undefined) u.hashOn = lowerHeader(u.hashOn)
    else if (u.strategy === 'consistent_hash') u.hashOn = DEFAULTS.upstream.hashOn
    const a = u.healthCheck.active
    if (a !== undefined) {
      a.unhealthyInterval ??= a.interval
      a.timeout ??= Math.min(DEFAULTS.activeHealthCheck.timeout, a.interval)
      a.jitter ??= Math.round(a.interval * DEFAULTS.activeHealthCheck.jitterRatio)
    }
  }
  for (const rule of cfg.rateLimit.default ?? []) rule.key = lowerHeader(rule.key)
  const globalLimits = cfg.rateLimit.default ?? []
  cfg.routes.forEach((r, i) => {
    // cross-checks ran first: the upstream (or a split's first side) exists; a split route's derived values come from its first side
    const u = cfg.upstreams[r.upstream ?? r.split![0].upstream]
    if (r.path.length > 1) r.path = r.path.replace(/\/+$/, '') || '/'
    if (r.hosts !== undefined) r.hosts = r.hosts.map(h => h.toLowerCase())
    if (r.match !== undefined) r.match.headers = Object.fromEntries(Object.entries(r.match.headers).map(([k, v]) => [k.toLowerCase(), v]))
    r.strategy ??= u.strategy
    if (r.hashOn !== undefined) r.hashOn = lowerHeader(r.hashOn)
    else if (r.strategy === 'consistent_hash') r.hashOn = u.hashOn ?? DEFAULTS.upstream.hashOn
    if (input.routes?.[i]?.rateLimit === undefined) r.rateLimit = structuredClone(globalLimits)
    for (const rule of r.rateLimit) rule.key = lowerHeader(rule.key)
    // route keys override the upstream's, one by one
    r.failover = { ...structuredClone(u.failover), ...(r.failover as Partial<typeof r.failover> | undefined) }
  })
}

/** `header:X-User-Id` -> `header:x-user-id`: Node lower-cases incoming header names. */
function lowerHeader (hashOn: string): string {
  return hashOn.startsWith('header:') ? hashOn.toLowerCase() : hashOn
}
