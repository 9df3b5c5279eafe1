// ajv errors -> one clear issue per path: `upstreams.users.strategy: must be one of round_robin, ...`.
import type { ErrorObject } from 'ajv'
import { joinPath, MAX_ISSUES, moreIssues, type ConfigIssue } from './config-error.js'
import { isSecretKey, REDACTED } from './redact.js'

type AnySchema = Record<string, unknown>

/** ajv errors -> issues, at most MAX_ISSUES of them (then one line counting the rest: a huge bad document stays cheap). */
export function translateErrors (errors: readonly ErrorObject[], data: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = []
  const seen = new Set<string>()
  const resolved = resolveUnions(errors)
  for (let i = 0; i < resolved.length; i++) {
    if (out.length === MAX_ISSUES) { out.push(moreIssues(resolved.length - i)); break }
    const e = resolved[i]
    const issue = e.keyword === 'x-union'
      ? { path: pointerToPath(e.instancePath, data), message: String((e.params as { message: string }).message) }
      : toIssue(e, data)
    if (issue.path === '') issue.message = `the config ${issue.message}`
    const key = `${issue.path}\n${issue.message}`
    if (!seen.has(key)) { seen.add(key); out.push(issue) }
  }
  return out
}

/** An ajv error, and for a union's error the errors of its branches (a tree, built in one pass). */
interface Node { e: ErrorObject, children: Node[] | undefined, resolved?: ErrorObject[] }

const isUnion = (e: ErrorObject): boolean => e.keyword === 'anyOf' || e.keyword === 'oneOf'
/** `b` sits inside union `u`: under its schema path and at or below its data. */
const within = (b: ErrorObject, u: ErrorObject): boolean =>
  b.schemaPath.startsWith(u.schemaPath + '/') && (b.instancePath === u.instancePath || b.instancePath.startsWith(u.instancePath + '/'))

/**
 * ajv reports every branch of an anyOf. Keep one story per union: the branch that matches the value's
 * shape when there is exactly one (its own errors say more), otherwise one message naming what is allowed.
 * Linear: ajv pushes a union's branch errors just before the union's own error, so a stack nests them.
 */
function resolveUnions (errors: readonly ErrorObject[]): ErrorObject[] {
  const stack: Node[] = []
  for (const e of errors) {
    // the `propertyNames` error that follows says it better, naming the key
    if (e.schemaPath.includes('/propertyNames/')) continue
    if (!isUnion(e)) { stack.push({ e, children: undefined }); continue }
    let i = stack.length
    while (i > 0 && within(stack[i - 1].e, e)) i--
    stack.push({ e, children: stack.splice(i) })
  }
  const out: ErrorObject[] = []
  for (const n of stack) for (const r of resolveNode(n)) out.push(r)
  return out
}

function resolveNode (n: Node): ErrorObject[] {
  if (n.resolved !== undefined) return n.resolved
  if (n.children === undefined) return (n.resolved = [n.e])
  const e = n.e
  const branches = new Map<string, Node[]>()
  for (const c of n.children) {
    const idx = c.e.schemaPath.slice(e.schemaPath.length + 1).split('/', 1)[0]
    const list = branches.get(idx)
    if (list === undefined) branches.set(idx, [c])
    else list.push(c)
  }
  // branches whose type fits the value (no `type` error at the union's own path)
  const wrongType = (c: Node): boolean =>
    (c.e.instancePath === e.instancePath && (c.e.keyword === 'type' || c.e.keyword === 'enum' || c.e.keyword === 'const')) ||
    (c.children !== undefined && c.children.some(wrongType))
  const fitting = [...branches.values()].filter(list => !list.some(wrongType))
  const isContainer = typeof e.data === 'object' && e.data !== null
  let chosen: Node[] | undefined
  if (isContainer && fitting.length === 1) chosen = fitting[0]
  else if (isContainer && fitting.length > 1) {
    const sizes = fitting.map(list => list.reduce((sum, c) => sum + resolveNode(c).length, 0))
    const min = Math.min(...sizes)
    if (sizes.filter(s => s === min).length === 1) chosen = fitting[sizes.indexOf(min)]
  }
  n.resolved = chosen !== undefined ? chosen.flatMap(resolveNode) : [unionIssue(e)]
  return n.resolved
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
  // the value of a secret key (token, password) is never quoted back
  if (isSecretKey(e.instancePath.slice(e.instancePath.lastIndexOf('/') + 1))) e = { ...e, data: REDACTED }
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
