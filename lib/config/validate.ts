// validateConfig: schema (ajv), cross-checks, normalization. The one gate every config passes through.
import { isIP } from 'node:net'
import { Ajv, type ValidateFunction } from 'ajv'
import { ConfigError } from './config-error.js'
import { crossCheck } from './crosscheck.js'
import { translateErrors } from './issues.js'
import { applySchema, resolveDerived } from './normalize.js'
import { ANNOTATIONS } from './schema-kit.js'
import { GatewayConfigSchema, type GatewayConfig, type GatewayConfigInput } from './schema.js'
import type { ConfigIssue } from './config-error.js'

export { DEFAULTS } from './defaults.js'
export { describeOptions, type OptionDescription } from './describe.js'

let check: ValidateFunction | undefined
/** Compiled on first use (~0.2 s): importing the types, DEFAULTS or describeOptions costs nothing. */
function validator (): ValidateFunction {
  if (check !== undefined) return check
  const ajv = new Ajv({ allErrors: true, strict: true, useDefaults: false, verbose: true })
  for (const keyword of ANNOTATIONS) ajv.addKeyword(keyword)
  ajv.addFormat('http-origin', isHttpOrigin)
  ajv.addFormat('http-url', (s: string) => parseUrl(s, ['http:', 'https:']) !== undefined)
  ajv.addFormat('redis-url', (s: string) => parseUrl(s, ['redis:', 'rediss:']) !== undefined)
  ajv.addFormat('ip-or-cidr', isIpOrCidr)
  check = ajv.compile(GatewayConfigSchema)
  return check
}

/**
 * Validates a config (the plugin options, or a file once the loader substituted the environment) and
 * returns it normalized: defaults filled, durations in ms, per-route strategy, hashOn, limits, failover
 * and upstream timeouts resolved. Throws a ConfigError listing every issue. Never mutates `raw`.
 */
export function validateConfig (raw: unknown): GatewayConfig {
  const input = raw ?? {}
  const validate = validator()
  if (!validate(input)) throw new ConfigError(translateErrors(validate.errors ?? [], input))
  const issues: ConfigIssue[] = []
  const cfg = applySchema(GatewayConfigSchema, input, [], issues) as GatewayConfig
  if (issues.length === 0) issues.push(...crossCheck(cfg, input as GatewayConfigInput))
  if (issues.length > 0) throw new ConfigError(issues)
  resolveDerived(cfg, input as GatewayConfigInput)
  Object.defineProperty(cfg, kNormalized, { value: true, enumerable: false })
  // the input as given: a normalized config is not valid input again, and config sync stores input
  Object.defineProperty(cfg, kInput, { value: input, enumerable: false })
  return cfg
}

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
