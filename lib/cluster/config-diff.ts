// What a shared-config write changes, for the audit log: top-level keys, upstream names, route names.

export interface ConfigChanges {
  /** top-level keys whose value differs (upstreams, routes, rateLimit) */
  keys: string[]
  upstreams: NameChanges
  routes: NameChanges
}

export interface NameChanges { added: string[], removed: string[], changed: string[] }

type Doc = Record<string, unknown>

/** The differences between two shared documents (JSON values; either may lack a key). */
export function diffSharedConfig (before: unknown, after: unknown): ConfigChanges {
  const a = asDoc(before)
  const b = asDoc(after)
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
    .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
  return {
    keys,
    upstreams: diffNamed(byName(asDoc(a.upstreams)), byName(asDoc(b.upstreams))),
    routes: diffNamed(routesByName(a.routes), routesByName(b.routes)),
  }
}

/** A route's name in the audit: its path, with its methods when it has some (`GET,HEAD /users`). */
export function routeName (route: unknown): string {
  const r = asDoc(route)
  const path = typeof r.path === 'string' ? r.path : '?'
  return Array.isArray(r.methods) ? `${r.methods.join(',')} ${path}` : path
}

function routesByName (routes: unknown): Map<string, string> {
  const out = new Map<string, string>()
  if (!Array.isArray(routes)) return out
  for (const r of routes) {
    let name = routeName(r)
    // two routes of one name (a config error) stay apart in the diff
    for (let i = 2; out.has(name); i++) name = `${routeName(r)} #${i}`
    out.set(name, JSON.stringify(r))
  }
  return out
}

function byName (o: Doc): Map<string, string> {
  return new Map(Object.entries(o).map(([k, v]) => [k, JSON.stringify(v)]))
}

function diffNamed (a: Map<string, string>, b: Map<string, string>): NameChanges {
  const out: NameChanges = { added: [], removed: [], changed: [] }
  for (const [name, v] of b) {
    const old = a.get(name)
    if (old === undefined) out.added.push(name)
    else if (old !== v) out.changed.push(name)
  }
  for (const name of a.keys()) if (!b.has(name)) out.removed.push(name)
  return out
}

function asDoc (v: unknown): Doc {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? v as Doc : {}
}
