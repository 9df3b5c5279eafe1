// The YAML file -> a validated config: parse, substitute the environment, apply the CLI overrides, validate.
import { readFileSync } from 'node:fs'
import YAML from 'yaml'
import { ConfigError } from './config-error.js'
import { coerceScalars, stringPaths } from './coerce.js'
import { inputGuardIssues } from './input-guard.js'
import { substituteEnv, type Env } from './env.js'
import { GatewayConfigSchema, type GatewayConfig } from './schema.js'
import { validateConfig } from './validate.js'

/** Reads, parses and validates a YAML config file. Throws ConfigError (YAML errors carry file:line:column). */
export function loadConfigFile (file: string, env: Env = process.env): GatewayConfig {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new ConfigError([{ path: '', message: `cannot read config file ${file}: ${e.code ?? e.message}` }], { cause: err })
  }
  return parseConfigText(text, env, file)
}

/** The same, from YAML text; `source` names it in syntax errors. */
export function parseConfigText (text: string, env: Env = process.env, source = '<config>'): GatewayConfig {
  const raw = parseYaml(text, source)
  // before the environment is substituted: copying a `__proto__` key would set a prototype (hidden config)
  const unsafe = inputGuardIssues(raw)
  if (unsafe.length > 0) throw new ConfigError(unsafe)
  const data = substituteEnv(raw, env)
  // every string, not only whole `${VAR}` values: `port: "4180"` reads as `port: ${PORT:-4180}` does
  coerceScalars(GatewayConfigSchema as unknown as Record<string, unknown>, data, stringPaths(data))
  applyEnvOverrides(data, env)
  return validateConfig(data)
}

/** `GATEWAY_PORT`, `GATEWAY_NODE_ID`, `REDIS_URL` and `GATEWAY_LOG_LEVEL` win over the file (set and non-empty). */
export function applyEnvOverrides (data: unknown, env: Env): void {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) return
  const root = data as Record<string, unknown>
  const section = (key: string): Record<string, unknown> | undefined => {
    root[key] ??= {}
    const s = root[key]
    return s !== null && typeof s === 'object' && !Array.isArray(s) ? s as Record<string, unknown> : undefined
  }
  const { GATEWAY_PORT: port, GATEWAY_NODE_ID: id, REDIS_URL: redis, GATEWAY_LOG_LEVEL: level } = env
  if (port !== undefined && port !== '') {
    if (!/^\d+$/.test(port)) throw new ConfigError([{ path: 'node.port', message: `GATEWAY_PORT must be a port number, got ${JSON.stringify(port)}` }])
    const node = section('node')
    if (node !== undefined) node.port = Number(port)
  }
  if (id !== undefined && id !== '') { const node = section('node'); if (node !== undefined) node.id = id }
  if (redis !== undefined && redis !== '') { const cluster = section('cluster'); if (cluster !== undefined) cluster.redis = redis }
  // validated with the file: a bad level fails boot naming log.level
  if (level !== undefined && level !== '') { const log = section('log'); if (log !== undefined) log.level = level }
}

// `${VAR}` is not valid YAML inside a flow mapping ({ token: ${X} }): hide each reference behind a
// plain-scalar placeholder of the same length (columns in YAML errors stay right), restore it after parsing.
const REF_RE = /\$\{[^}\n]*\}/g
const OPEN = '\u2983'
const CLOSE = '\u2984'
const PLACEHOLDER_RE = new RegExp(`\\$${OPEN}([0-9a-z]+)_*${CLOSE}`, 'g')

function parseYaml (text: string, source: string): unknown {
  const refs: string[] = []
  const shielded = text.replace(REF_RE, (ref) => {
    const id = (refs.push(ref) - 1).toString(36)
    return `$${OPEN}${id.padEnd(ref.length - 3, '_')}${CLOSE}`
  })
  const doc = YAML.parseDocument(shielded, { prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map(e => {
      const pos = e.linePos?.[0]
      const where = pos === undefined ? source : `${source}:${pos.line}:${pos.col}`
      return { path: '', message: `${where}: YAML syntax error: ${restore(e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, ''), refs)}` }
    }))
  }
  return restoreDeep(doc.toJS({ maxAliasCount: 100 }), refs)
}

function restore (s: string, refs: string[]): string {
  return s.includes(OPEN) ? s.replace(PLACEHOLDER_RE, (m, id: string) => refs[parseInt(id, 36)] ?? m) : s
}

function restoreDeep (v: unknown, refs: string[]): unknown {
  if (refs.length === 0) return v
  if (typeof v === 'string') return restore(v, refs)
  if (Array.isArray(v)) return v.map(x => restoreDeep(x, refs))
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [restore(k, refs), restoreDeep(x, refs)]))
  }
  return v
}
