// ajv errors -> one clear issue per path: `upstreams.users.strategy: must be one of round_robin, ...`.
import type { ErrorObject } from 'ajv'
import { joinPath, type ConfigIssue } from './config-error.js'

type AnySchema = Record<string, unknown>

export function translateErrors (errors: readonly ErrorObject[], data: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = []
  const seen = new Set<string>()
  for (const e of resolveUnions(errors)) {
    const issue = e.keyword === 'x-union'
      ? { path: pointerToPath(e.instancePath, data), message: String((e.params as { message: string }).message) }
      : toIssue(e, data)
    if (issue.path === '') issue.message = `the config ${issue.message}`
    const key = `${issue.path}\n${issue.message}`
    if (!seen.has(key)) { seen.add(key); out.push(issue) }
  }
  return out
}

/**
 * ajv reports every branch of an anyOf. Keep one story per union: the branch that matches the value's
 * shape when there is exactly one (its own errors say more), otherwise one message naming what is allowed.
 */
function resolveUnions (errors: readonly ErrorObject[]): ErrorObject[] {
  const unions = errors.filter(e => e.keyword === 'anyOf' || e.keyword === 'oneOf')
  const outer = unions.filter(u => !unions.some(v => v !== u && u.schemaPath.startsWith(v.schemaPath + '/')))
  const inside = (e: ErrorObject): ErrorObject | undefined => outer.find(u => e !== u && e.schemaPath.startsWith(u.schemaPath + '/'))
  const result: ErrorObject[] = []
  for (const e of errors) {
    if (inside(e) !== undefined) continue
    // the `propertyNames` error that follows says it better, naming the key
    if (e.schemaPath.includes('/propertyNames/')) continue
    if (!outer.includes(e)) { result.push(e); continue }
    const branches = new Map<string, ErrorObject[]>()
    for (const b of errors) {
      if (b === e || !b.schemaPath.startsWith(e.schemaPath + '/')) continue
      const idx = b.schemaPath.slice(e.schemaPath.length + 1).split('/')[0]
      const list = branches.get(idx) ?? []
      list.push(b)
      branches.set(idx, list)
    }
    // branches whose type fits the value (no `type` error at the union's own path)
    const fitting = [...branches.values()].filter(list =>
      !list.some(b => b.instancePath === e.instancePath && (b.keyword === 'type' || b.keyword === 'enum' || b.keyword === 'const')))
    const isContainer = typeof e.data === 'object' && e.data !== null
    let chosen: ErrorObject[] | undefined
    if (isContainer && fitting.length === 1) chosen = fitting[0]
    else if (isContainer && fitting.length > 1) {
      const sizes = fitting.map(list => resolveUnions(list).length)
      const min = Math.min(...sizes)
      if (sizes.filter(s => s === min).length === 1) chosen = fitting[sizes.indexOf(min)]
    }
    if (chosen !== undefined) result.push(...resolveUnions(chosen))
    else result.push(unionIssue(e))
  }
  return result
}

function unionIssue (e: ErrorObject): ErrorObject {
  const schema = (e.parentSchema ?? {}) as AnySchema
  const hint = typeof schema['x-hint'] === 'string' ? schema['x-hint'] : describeBranches(schema)
  return { ...e, keyword: 'x-union', params: { message: `must be ${hint}, got ${show(e.data)}` } }
}

function describeBranches (schema: AnySchema): string {
  const branches = (schema.anyOf ?? schema.oneOf ?? []) as AnySchema[]
  return branches.map(b => String(b['x-hint'] ?? b.type ?? 'a value')).join(' or ')
}

function toIssue (e: ErrorObject, data: unknown): ConfigIssue {
  const schema = (e.parentSchema ?? {}) as AnySchema
  const hint = typeof schema['x-hint'] === 'string' ? schema['x-hint'] : undefined
  const p = e.params as Record<string, unknown>
  const at = (extra?: string): string => pointerToPath(extra === undefined ? e.instancePath : `${e.instancePath}/${escape(extra)}`, data)
  switch (e.keyword) {
    case 'required':
      return { path: at(String(p.missingProperty)), message: 'is required' }
    case 'additionalProperties': {
      const key = String(p.additionalProperty)
      const allowed = Object.keys((schema.properties ?? {}) as AnySchema)
      const near = closest(key, allowed)
      const tail = near !== undefined ? ` (did you mean "${near}"?)` : allowed.length > 0 ? ` (allowed: ${allowed.join(', ')})` : ''
      return { path: at(key), message: `unknown key "${key}"${tail}` }
    }
    case 'propertyNames':
      return { path: at(String(p.propertyName)), message: `invalid name "${String(p.propertyName)}": use ${hint ?? 'another name'}` }
    case 'type':
      return { path: at(), message: `must be ${hint ?? article(String(p.type))}, got ${show(e.data)}` }
    case 'enum':
      return { path: at(), message: `must be one of ${(p.allowedValues as unknown[]).map(String).join(', ')}, got ${show(e.data)}` }
    case 'const':
      return { path: at(), message: `must be ${show(p.allowedValue)}, got ${show(e.data)}` }
    case 'minimum': case 'maximum': case 'exclusiveMinimum': case 'exclusiveMaximum':
      return { path: at(), message: hint !== undefined ? `must be ${hint}, got ${show(e.data)}` : `must be ${String(p.comparison)} ${String(p.limit)}, got ${show(e.data)}` }
    case 'minLength':
      return { path: at(), message: p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters` }
    case 'minItems':
      return { path: at(), message: `must have at least ${String(p.limit)} item${p.limit === 1 ? '' : 's'}` }
    case 'maxItems':
      return { path: at(), message: `must have at most ${String(p.limit)} items` }
    case 'uniqueItems':
      return { path: at(), message: `must not repeat an item (items ${String(p.j)} and ${String(p.i)} are equal)` }
    case 'pattern': case 'format':
      return { path: at(), message: `must be ${hint ?? `a string matching ${String(p.pattern ?? p.format)}`}, got ${show(e.data)}` }
    default:
      return { path: at(), message: e.message ?? `fails ${e.keyword}` }
  }
}

/** `/upstreams/users/targets/1/url` -> `upstreams.users.targets[1].url` (array indices found by walking the data). */
export function pointerToPath (pointer: string, data: unknown): string {
  if (pointer === '') return ''
  const segments: Array<string | number> = []
  let node: unknown = data
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    if (Array.isArray(node) && /^\d+$/.test(key)) {
      segments.push(Number(key))
      node = node[Number(key)]
    } else {
      segments.push(key)
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined
    }
  }
  return joinPath(segments)
}

function escape (key: string): string { return key.replace(/~/g, '~0').replace(/\//g, '~1') }

function article (type: string): string {
  const t = type.split(',').join(' or ')
  return /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`
}

/** A value as the user wrote it, short. */
export function show (v: unknown): string {
  if (v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'an array'
  if (v !== null && typeof v === 'object') return 'an object'
  if (typeof v === 'function') return 'a function'
  if (typeof v === 'bigint' || typeof v === 'symbol' || (typeof v === 'number' && !Number.isFinite(v))) return String(v)
  const s = JSON.stringify(v) ?? String(v)
  return s.length > 60 ? `${s.slice(0, 57)}...` : s
}

/** The allowed key nearest to a typo (Levenshtein distance <= 2, or a case-only difference). */
function closest (key: string, allowed: string[]): string | undefined {
  let best: string | undefined
  let bestD = 3
  for (const a of allowed) {
    const d = a.toLowerCase() === key.toLowerCase() ? 0 : levenshtein(key, a)
    if (d < bestD) { bestD = d; best = a }
  }
  return best
}

function levenshtein (a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    prev = cur
  }
  return prev[b.length]
}
