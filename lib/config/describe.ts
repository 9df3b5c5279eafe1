// Every option of the schema as a flat table: what the README's options table is checked against.
import { GatewayConfigSchema } from './schema.js'

export interface OptionDescription {
  /** `upstreams.<name>.targets[].url`: `<name>` for a map key, `[]` for an array item. */
  path: string
  type: string
  default?: unknown
  description: string
}

type AnySchema = Record<string, unknown>

/** One row per option, in schema order; a union of objects lists the keys of each shape under one path. */
export function describeOptions (): OptionDescription[] {
  const out: OptionDescription[] = []
  const seen = new Set<string>()
  walk(GatewayConfigSchema as unknown as AnySchema, '', out, seen)
  return out
}

function walk (s: AnySchema, path: string, out: OptionDescription[], seen: Set<string>): void {
  if (path !== '' && !seen.has(path)) {
    seen.add(path)
    const row: OptionDescription = { path, type: typeName(s), description: describe(s) }
    if ('default' in s) row.default = s.default
    out.push(row)
  }
  for (const [p, child] of children(s, path)) walk(child, p, out, seen)
}

/** The options nested in a schema, with their paths. */
function children (s: AnySchema, path: string): Array<[string, AnySchema]> {
  if (s['x-kind'] !== undefined && s['x-kind'] !== 'oneOrMany') return []
  const join = (k: string): string => path === '' ? k : `${path}.${k}`
  if (s.properties !== undefined) return Object.entries(s.properties as Record<string, AnySchema>).map(([k, c]) => [join(k), c])
  if (s.patternProperties !== undefined) {
    const v = Object.values(s.patternProperties as Record<string, AnySchema>)[0]
    return isContainer(v) ? children(v, join('<name>')) : []
  }
  if (s.items !== undefined) {
    const item = s.items as AnySchema
    return isContainer(item) ? children(item, `${path}[]`) : []
  }
  const branches = (s.anyOf ?? []) as AnySchema[]
  // one-or-many: the items are described once, under the option's own path
  if (s['x-kind'] === 'oneOrMany') return children(branches[0], path)
  return branches.filter(b => b.type === 'object' && b.properties !== undefined).flatMap(b => children(b, path))
}

function isContainer (s: AnySchema): boolean {
  return s.properties !== undefined || (s.items !== undefined && isContainer(s.items as AnySchema))
}

function typeName (s: AnySchema): string {
  switch (s['x-kind']) {
    case 'duration': return 'duration'
    case 'statuses': return 'status[]'
    case 'retryOn': return '(connect_failure | reset | timeout | status)[]'
    case 'oneOrMany': return 'object | object[]'
  }
  if (Array.isArray(s.enum)) return s.enum.join(' | ')
  if (s.anyOf !== undefined) return [...new Set((s.anyOf as AnySchema[]).map(typeName))].join(' | ')
  if (s.type === 'array') return `${typeName(s.items as AnySchema)}[]`
  if (s.type === 'object' && s.patternProperties !== undefined) {
    const v = Object.values(s.patternProperties as Record<string, AnySchema>)[0]
    return v.type === undefined ? 'object' : `map of ${typeName(v)}`
  }
  return typeof s.type === 'string' ? s.type : 'any'
}

function describe (s: AnySchema): string {
  const d = typeof s.description === 'string' ? s.description + (s['x-positive'] === true ? ' (> 0)' : '') : ''
  const hint = s['x-hint']
  const showHint = typeof hint === 'string' && s['x-kind'] === undefined && (s.pattern !== undefined || s.format !== undefined)
  return showHint ? `${d}. Allowed: ${hint}` : d
}
