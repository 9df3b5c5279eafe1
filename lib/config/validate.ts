// validateConfig: schema (ajv), cross-checks, normalization. The one gate every config passes through.
import { isIP } from 'node:net'
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { ConfigError } from './config-error.js'
import { crossCheck } from './crosscheck.js'
import { inputGuardIssues } from './input-guard.js'
import { translateErrors } from './issues.js'
import { applySchema, resolveDerived } from './normalize.js'
import { ANNOTATIONS } from './schema-kit.js'
import { GatewayConfigSchema, type GatewayConfig, type GatewayConfigInput } from './schema.js'
import type { ConfigIssue } from './config-error.js'

export { DEFAULTS } from './defaults.js'
export { describeOptions, type OptionDescription } from './describe.js'

let check: { whole: ValidateFunction, routes: ValidateFunction } | undefined
/** Compiled on first use (~0.2 s): importing the types, DEFAULTS or describeOptions costs nothing. */
function validators (): { whole: ValidateFunction, routes: ValidateFunction } {
  if (check !== undefined) return check
  // code.optimize off: ajv's name optimisation adds hundreds of distinct first keys to fresh `{}` objects while it
  // compiles, which fills the 1,536 transitions of the map every `{}` starts from; from then on objects built alike
  // get maps of their own and every process.nextTick went through V8's runtime (test/internals/v8-shapes.test.ts)
  const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: false, verbose: true, code: { optimize: false } })
  for (const keyword of ANNOTATIONS) ajv.addKeyword(keyword)
  ajv.addFormat('http-origin', isHttpOrigin)
  ajv.addFormat('http-url', (s: string) => parseUrl(s, ['http:', 'https:']) !== undefined)
  ajv.addFormat('redis-url', (s: string) => parseUrl(s, ['redis:', 'rediss:']) !== undefined)
  ajv.addFormat('ip-or-cidr', isIpOrCidr)
  check = { whole: ajv.compile(GatewayConfigSchema), routes: ajv.compile({ type: 'array', items: ROUTE_SCHEMA }) }
  return check
}
function validator (): ValidateFunction { return validators().whole }

const ROUTE_SCHEMA = (GatewayConfigSchema.properties.routes as unknown as { items: Record<string, unknown> }).items
/** Routes validated and normalized per chunk by validateConfigAsync, with a turn of the event loop between chunks. */
export const ROUTE_CHUNK = 1000

/**
 * Validates a config (the plugin options, or a file once the loader substituted the environment) and
 * returns it normalized: defaults filled, durations in ms, per-route strategy, hashOn, limits, failover
 * and upstream timeouts resolved. Throws a ConfigError listing every issue. Never mutates `raw`.
 */
export function validateConfig (raw: unknown): GatewayConfig {
  const input = raw ?? {}
  guard(input)
  const validate = validator()
  if (!validate(input)) throw new ConfigError(translateErrors(validate.errors ?? [], input))
  const issues: ConfigIssue[] = []
  const cfg = applySchema(GatewayConfigSchema, input, [], issues) as GatewayConfig
  return finish(cfg, input, issues)
}

/**
 * validateConfig for a config change on a running node: the same checks and result, but the routes are
 * validated and normalized ROUTE_CHUNK at a time with a turn of the event loop between chunks, so a
 * document of 20,000 routes never holds the node's requests (/health included) for long.
 */
export async function validateConfigAsync (raw: unknown): Promise<GatewayConfig> {
  const input = raw ?? {}
  const routes = (input as { routes?: unknown }).routes
  if (!Array.isArray(routes) || routes.length <= ROUTE_CHUNK) return validateConfig(input)
  guard(input)
  await turn()
  const { whole, routes: checkRoutes } = validators()
  const head = { ...(input as object), routes: [] }
  const errors: ErrorObject[] = []
  if (!whole(head)) errors.push(...(whole.errors ?? []))
  for (let i = 0; i < routes.length; i += ROUTE_CHUNK) {
    await turn()
    if (checkRoutes(routes.slice(i, i + ROUTE_CHUNK))) continue
    // `/3/path` in the chunk is `/routes/<i + 3>/path` in the document
    for (const e of checkRoutes.errors ?? []) errors.push({ ...e, instancePath: e.instancePath.replace(/^\/(\d+)/, (_m, n: string) => `/routes/${i + Number(n)}`) })
  }
  if (errors.length > 0) throw new ConfigError(translateErrors(errors, input))
  const issues: ConfigIssue[] = []
  const cfg = applySchema(GatewayConfigSchema, head, [], issues) as GatewayConfig
  const out: unknown[] = []
  for (let i = 0; i < routes.length; i += ROUTE_CHUNK) {
    await turn()
    const end = Math.min(routes.length, i + ROUTE_CHUNK)
    for (let j = i; j < end; j++) out.push(applySchema(ROUTE_SCHEMA, routes[j], ['routes', j], issues))
  }
  cfg.routes = out as GatewayConfig['routes']
  await turn()
  if (issues.length === 0) issues.push(...crossCheck(cfg, input as GatewayConfigInput))
  await turn()
  return finish(cfg, input, issues, true)
}

/** Cross-checks, derived values and the markers: the common end of both validations. */
function finish (cfg: GatewayConfig, input: unknown, issues: ConfigIssue[], checked = false): GatewayConfig {
  if (issues.length === 0 && !checked) issues.push(...crossCheck(cfg, input as GatewayConfigInput))
  if (issues.length > 0) throw new ConfigError(issues)
  resolveDerived(cfg, input as GatewayConfigInput)
  Object.defineProperty(cfg, kNormalized, { value: true, enumerable: false })
  // the input as given: a normalized config is not valid input again, and config sync stores input
  Object.defineProperty(cfg, kInput, { value: input, enumerable: false })
  return cfg
}

/** Keys that reach an object's prototype, and nesting deeper than any config: refused before the schema runs. */
function guard (input: unknown): void {
  const issues = inputGuardIssues(input)
  if (issues.length > 0) throw new ConfigError(issues)
}

/** One turn of the event loop: requests waiting (/health) are served between two steps of a long validation. */
export async function turn (): Promise<void> { await new Promise((resolve) => setImmediate(resolve)) }

/** Marks a config returned by validateConfig (non-enumerable), so a plugin does not validate it twice. */
export const kNormalized = Symbol.for('fastify-ha-gateway.config.normalized')
export function isNormalizedConfig (c: unknown): c is GatewayConfig {
  return typeof c === 'object' && c !== null && (c as Record<symbol, unknown>)[kNormalized] === true
}

const kInput = Symbol.for('fastify-ha-gateway.config.input')
/** The input a config returned by validateConfig was made from (undefined for other objects). */
export function configInput (c: GatewayConfig): unknown {
  return (c as unknown as Record<symbol, unknown>)[kInput]
}

/** Like validateConfig, but returns the issues instead of throwing ([] when the config is valid). */
export function configIssues (raw: unknown): ConfigIssue[] {
  try {
    validateConfig(raw)
    return []
  } catch (err) {
    if (err instanceof ConfigError) return err.issues
    throw err
  }
}

function parseUrl (s: string, protocols: string[]): URL | undefined {
  try {
    const u = new URL(s)
    return protocols.includes(u.protocol) && u.hostname !== '' ? u : undefined
  } catch {
    return undefined
  }
}

/** A target is an origin: a path would be silently dropped (the request path is forwarded as is). */
function isHttpOrigin (s: string): boolean {
  const u = parseUrl(s, ['http:', 'https:'])
  return u !== undefined && u.username === '' && u.password === '' && u.pathname === '/' && u.search === '' && u.hash === '' &&
    !s.includes('?') && !s.includes('#')
}

function isIpOrCidr (s: string): boolean {
  const [ip, bits, extra] = s.split('/')
  const v = isIP(ip)
  if (v === 0 || extra !== undefined) return false
  if (bits === undefined) return true
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (v === 4 ? 32 : 128)
}
