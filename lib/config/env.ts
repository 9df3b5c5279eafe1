// `${VAR}` and `${VAR:-default}` in every string of a raw config; `$${` writes a literal `${`.
import { ConfigError, joinPath, type ConfigIssue } from './config-error.js'

export type Env = Record<string, string | undefined>
export type PathSegments = Array<string | number>

const REF = /\$(\$?)\{([^}]*)\}/g
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * A copy of `raw` with environment references replaced in every string value (keys are left alone).
 * `${VAR:-default}` uses the default when VAR is unset or empty, as in sh. A missing variable
 * without a default is an issue naming the config path; all of them are thrown together.
 * `wholeValues` collects the paths of strings that were exactly one reference (`port: ${PORT}`),
 * which the loader may turn into numbers or booleans where the schema wants one.
 */
export function substituteEnv (raw: unknown, env: Env = process.env, wholeValues?: PathSegments[]): unknown {
  const issues: ConfigIssue[] = []
  const out = walk(raw, [], env, issues, wholeValues)
  if (issues.length > 0) throw new ConfigError(issues)
  return out
}

function walk (v: unknown, path: PathSegments, env: Env, issues: ConfigIssue[], whole?: PathSegments[]): unknown {
  if (typeof v === 'string') return substitute(v, path, env, issues, whole)
  if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i], env, issues, whole))
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {}
    for (const [k, x] of Object.entries(v)) o[k] = walk(x, [...path, k], env, issues, whole)
    return o
  }
  return v
}

function substitute (s: string, path: PathSegments, env: Env, issues: ConfigIssue[], whole?: PathSegments[]): string {
  if (!s.includes('${')) return s
  let refs = 0
  let escaped = false
  const out = s.replace(REF, (match, dollar: string, body: string) => {
    if (dollar === '$') { escaped = true; return match.slice(1) }
    refs++
    const sep = body.indexOf(':-')
    const name = sep === -1 ? body : body.slice(0, sep)
    if (!NAME.test(name)) {
      issues.push({ path: joinPath(path), message: `invalid environment reference "${match}": use \${NAME} or \${NAME:-default}` })
      return match
    }
    const value = env[name]
    if (sep !== -1) return value === undefined || value === '' ? body.slice(sep + 2) : value
    if (value === undefined) {
      issues.push({ path: joinPath(path), message: `environment variable ${name} is not set (use \${${name}:-default} for a default)` })
      return match
    }
    return value
  })
  if (whole !== undefined && refs === 1 && !escaped && /^\$\{[^}]*\}$/.test(s)) whole.push(path)
  return out
}
