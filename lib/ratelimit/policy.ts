// A route's limits compiled once: rules checked, keys resolved to functions, allow list and client IP.
// Pure (no Fastify): the plugin hands in requests shaped like RequestLike.
import { BlockList, isIP } from 'node:net'
import proxyAddr from '@fastify/proxy-addr'
import { compileTrust, type TrustProxy } from '../trust-proxy.js'
import { parseDuration } from '../config/duration.js'
import { advertise, policyHeader, type AdvertisedPolicy } from './headers.js'
import { keyBuilder } from './key.js'
import { ALGORITHMS, type Algorithm, type LimitMode, type LimitRule } from './types.js'

/** What the limiter reads of a request (a FastifyRequest fits). */
export interface RequestLike {
  readonly headers: Record<string, string | string[] | undefined>
  readonly raw: { readonly headers: Record<string, string | string[] | undefined>, readonly socket: { readonly remoteAddress?: string } }
}

export type KeyFunction<R = any> = (request: R) => string | undefined
export type CostFunction<R = any> = (request: R) => number
export type { LimitMode }

/** One limit as code or the config writes it. `window`: ms or a duration string ('1s'). */
export interface RateLimitRuleOptions {
  algorithm: Algorithm
  limit: number
  window: number | string
  /** ip (default) | route | header:<name> | a function of the request. */
  key?: string | KeyFunction
  /** Units each request spends (default 1), or a function of the request. */
  cost?: number | CostFunction
  /** exact (default): every decision in the store; lease: spend a slice of the budget locally. */
  mode?: LimitMode
  /** Count and log, never refuse. */
  shadow?: boolean
  /** Lease mode: units a node takes per Redis call (default 5 % of the limit). */
  leaseSize?: number
}

export type KeyKind = 'ip' | 'header' | 'route' | 'function'

export interface CompiledRule {
  readonly rule: LimitRule
  readonly mode: LimitMode
  readonly shadow: boolean
  readonly cost: number
  readonly costFn: CostFunction | undefined
  readonly kind: KeyKind
  /** Lower-cased header name (kind 'header'). */
  readonly header: string
  readonly keyFn: KeyFunction | undefined
  /** The store key of a client part: `${prefix}${route}:${index}:{hash}` (lib/ratelimit/key.ts). */
  readonly keyOf: (client: string) => string
  /** Kind 'route': the one key of the route, built once. */
  readonly routeKey: string
  readonly policy: AdvertisedPolicy
}

export interface RoutePolicy {
  readonly route: string
  readonly rules: CompiledRule[]
  /** Rules that can refuse (not shadow): the headers advertise these. */
  readonly enforced: CompiledRule[]
  /** `RateLimit-Policy` value of the enforced rules (empty when none). */
  readonly policyHeader: string
  /** Some rule keys on the client IP (or may fall back to it). */
  readonly needsIp: boolean
}

const KEY_RE = /^(?:ip|route|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$/

/** Normalize and check one rule; throws a TypeError that names `at`. Keys live under `prefix` (`${cluster.name}:rl:`). */
export function compileRule (o: RateLimitRuleOptions, at: string, keyOf: (client: string) => string = noKey): CompiledRule {
  if (typeof o !== 'object' || o === null) throw new TypeError(`${at}: a limit must be an object { algorithm, limit, window }`)
  if (!(ALGORITHMS as readonly string[]).includes(o.algorithm)) throw new TypeError(`${at}.algorithm: must be one of ${ALGORITHMS.join(', ')}`)
  if (!Number.isInteger(o.limit) || o.limit < 1) throw new TypeError(`${at}.limit: must be an integer of at least 1`)
  let window: number
  try { window = typeof o.window === 'string' ? parseDuration(o.window) : o.window } catch (err) { throw new TypeError(`${at}.window: ${(err as Error).message}`) }
  if (typeof window !== 'number' || !Number.isFinite(window) || window <= 0) throw new TypeError(`${at}.window: must be a duration longer than 0`)
  const mode = o.mode ?? 'exact'
  if (mode !== 'exact' && mode !== 'lease') throw new TypeError(`${at}.mode: must be exact or lease`)
  let cost = 1
  let costFn: CostFunction | undefined
  if (typeof o.cost === 'function') costFn = o.cost
  else if (o.cost !== undefined) {
    if (!Number.isInteger(o.cost) || o.cost < 0) throw new TypeError(`${at}.cost: must be an integer of at least 0`)
    if (o.cost > o.limit) throw new TypeError(`${at}.cost: ${o.cost} is more than limit ${o.limit}: no request could pass`)
    cost = o.cost
  }
  let kind: KeyKind
  let header = ''
  let keyFn: KeyFunction | undefined
  const key = o.key ?? 'ip'
  if (typeof key === 'function') { kind = 'function'; keyFn = key } else {
    if (typeof key !== 'string' || !KEY_RE.test(key)) throw new TypeError(`${at}.key: must be ip, route, header:<name> or a function`)
    if (key.startsWith('header:')) { kind = 'header'; header = key.slice(7).toLowerCase() } else kind = key as 'ip' | 'route'
  }
  const rule: LimitRule = { algorithm: o.algorithm, limit: o.limit, window }
  if (o.leaseSize !== undefined) {
    if (!Number.isInteger(o.leaseSize) || o.leaseSize < 1) throw new TypeError(`${at}.leaseSize: must be an integer of at least 1`)
    rule.leaseSize = o.leaseSize
  }
  const routeKey = kind === 'route' ? keyOf('') : ''
  return { rule, mode, shadow: o.shadow === true, cost, costFn, kind, header, keyFn, keyOf, routeKey, policy: { name: '', rule } }
}

function noKey (): string { return '' }

/**
 * A route's limits: `undefined` / `false` / `[]` give no rules. Each rule's budget is its own:
 * keys name the route and the rule's index (the client part is hashed).
 */
export function compileRoutePolicy (input: RateLimitRuleOptions | RateLimitRuleOptions[] | false | undefined, route: string,
  at = 'rateLimit', prefix = 'fastify-ha-gateway:rl:'): RoutePolicy | undefined {
  if (input === undefined || input === false) return undefined
  const list = Array.isArray(input) ? input : [input]
  if (list.length === 0) return undefined
  const compiled = list.map((o, i) => compileRule(o, Array.isArray(input) ? `${at}[${i}]` : at, cachedKeys(keyBuilder(prefix, route, i))))
  const named = advertise(compiled.map((r) => r.rule))
  const rules = compiled.map((r, i) => ({ ...r, policy: named[i] }))
  const enforced = rules.filter((r) => !r.shadow)
  return {
    route,
    rules,
    enforced,
    policyHeader: enforced.length > 0 ? policyHeader(enforced.map((r) => r.policy)) : '',
    needsIp: rules.some((r) => r.kind !== 'route'),
  }
}

/**
 * The client part of a rule's key. A header or function key that yields nothing falls back to
 * the client IP (in its own namespace), so leaving the header out never escapes the limit.
 */
export function clientPart (r: CompiledRule, request: RequestLike, ip: string): string {
  switch (r.kind) {
    case 'ip': return ip
    case 'route': return ''
    case 'header': {
      const v = request.headers[r.header]
      const s = Array.isArray(v) ? v.join(',') : v
      return s !== undefined && s !== '' ? 'h:' + s : 'ip:' + ip
    }
    case 'function': {
      const s = r.keyFn!(request)
      return typeof s === 'string' && s !== '' ? 'f:' + s : 'ip:' + ip
    }
  }
}

/** Units this request spends under `r` (integer, at least 0). */
export function costOf (r: CompiledRule, request: RequestLike): number {
  if (r.costFn === undefined) return r.cost
  const c = r.costFn(request)
  return Number.isFinite(c) && c > 0 ? Math.ceil(c) : 0
}

/** Most client keys remembered per rule; past it the cache starts over (a flood of new clients costs a hash each, no more). */
export const KEY_CACHE_SIZE = 4096

/** Remember recent clients' keys: the SHA-1 behind a key costs more than the lookup (~1 µs against ~0.05 µs). */
export function cachedKeys (build: (client: string) => string, max = KEY_CACHE_SIZE): (client: string) => string {
  let cache = new Map<string, string>()
  return (client) => {
    let k = cache.get(client)
    if (k === undefined) {
      if (cache.size >= max) cache = new Map()
      k = build(client)
      cache.set(client, k)
    }
    return k
  }
}

/** The store key of this request under `r`. */
export function storeKey (r: CompiledRule, request: RequestLike, ip: string): string {
  return r.kind === 'route' ? r.routeKey : r.keyOf(clientPart(r, request, ip))
}

export type { TrustProxy }

/**
 * The client address: the socket's, unless `trustProxy` is set, then the nearest untrusted hop of
 * X-Forwarded-For (@fastify/proxy-addr, as Fastify's `trustProxy`). A number trusts that many hops
 * (proxy-addr's classic meaning). IPv4-mapped IPv6 addresses come back as plain IPv4.
 */
export function compileClientIp (trustProxy: TrustProxy | undefined): (request: RequestLike) => string {
  const trust = compileTrust(trustProxy)
  if (trust === undefined) {
    return (request) => plainIp(request.raw.socket.remoteAddress ?? '')
  }
  return (request) => {
    const addrs = proxyAddr.all(request.raw as never, trust)
    return plainIp(addrs[addrs.length - 1] ?? '')
  }
}

function plainIp (addr: string): string {
  return addr.startsWith('::ffff:') && isIP(addr.slice(7)) === 4 ? addr.slice(7) : addr
}

/** IPs and CIDR ranges never limited; `undefined` when the list is empty. Throws on a malformed entry. */
export function compileAllowList (list: readonly string[] | undefined): ((ip: string) => boolean) | undefined {
  if (list === undefined || list.length === 0) return undefined
  const bl = new BlockList()
  for (const entry of list) {
    const [addr, bits, extra] = entry.trim().split('/')
    const family = isIP(addr)
    if (family === 0 || extra !== undefined) throw new TypeError(`rateLimit.allowList: "${entry}" is not an IP address or CIDR range`)
    const type = family === 4 ? 'ipv4' : 'ipv6'
    if (bits === undefined) { bl.addAddress(addr, type); continue }
    const prefix = Number(bits)
    if (!/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) throw new TypeError(`rateLimit.allowList: "${entry}" has a bad prefix length`)
    bl.addSubnet(addr, prefix, type)
  }
  return (ip) => {
    const family = isIP(ip)
    return family !== 0 && bl.check(ip, family === 4 ? 'ipv4' : 'ipv6')
  }
}
