// Rate-limit response headers: draft-ietf-httpapi-ratelimit-headers (-08 onward: `RateLimit-Policy` and
// `RateLimit`, Structured Field lists) and the legacy X-RateLimit-* trio. Pure: values in, strings out.
import type { Decision, HeaderStyle, LimitRule } from './types.js'

export type { HeaderStyle }

/** One enforced limit as advertised: its policy name and its rule. */
export interface AdvertisedPolicy {
  name: string
  /** `name` as a Structured Field string, quoted once. */
  quoted?: string
  rule: LimitRule
}

/** Seconds, rounded up: a client that waits this long is never early. */
export function ceilSeconds (ms: number): number {
  return ms <= 0 ? 0 : Math.ceil(ms / 1000)
}

/** A short policy name from the rule: `100-per-60s`. Deduplicated by the caller. */
export function policyName (rule: LimitRule): string {
  return `${rule.limit}-per-${fmtWindow(rule.window)}`
}

function fmtWindow (ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/** Name every policy of a route, unique within it (`10-per-1s`, `10-per-1s-2`). */
export function advertise (rules: LimitRule[]): AdvertisedPolicy[] {
  const seen = new Map<string, number>()
  return rules.map((rule) => {
    const base = policyName(rule)
    const n = (seen.get(base) ?? 0) + 1
    seen.set(base, n)
    const name = n === 1 ? base : `${base}-${n}`
    return { name, quoted: sfString(name), rule }
  })
}

/**
 * `RateLimit-Policy: "10-per-1s";q=10;w=1, "1000-per-1h";q=1000;w=3600`
 * (q: quota units, w: window in seconds). Static per route: computed once.
 */
export function policyHeader (policies: AdvertisedPolicy[]): string {
  return policies.map((p) => `${p.quoted ?? sfString(p.name)};q=${p.rule.limit};w=${Math.max(1, ceilSeconds(p.rule.window))}`).join(', ')
}

/** `RateLimit: "10-per-1s";r=3;t=1` (r: units left, t: seconds until the quota resets). */
export function rateLimitHeader (policy: AdvertisedPolicy, d: Decision): string {
  return `${policy.quoted ?? sfString(policy.name)};r=${Math.max(0, Math.floor(d.remaining))};t=${ceilSeconds(d.resetMs)}`
}

/** Names are built from digits, letters and `-`; quote anyway, as sf-string, in case a caller names its own. */
function sfString (s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => '\\' + c)}"`
}

/**
 * Whether `d` restricts more than `b`: a refusal before an allowance, between refusals the longer wait, between
 * allowances the fewer units left (what the client can still send before a refusal), then the later reset.
 */
export function moreRestrictive (d: Decision, b: Decision): boolean {
  if (d.allowed !== b.allowed) return !d.allowed
  if (!d.allowed) return d.retryAfterMs > b.retryAfterMs
  return d.remaining < b.remaining || (d.remaining === b.remaining && d.resetMs > b.resetMs)
}

/** Index of the most restrictive decision (see moreRestrictive); -1 when there is none. */
export function mostRestrictive (decisions: ReadonlyArray<Decision | undefined>): number {
  let best = -1
  for (let i = 0; i < decisions.length; i++) {
    const d = decisions[i]
    if (d !== undefined && (best === -1 || moreRestrictive(d, decisions[best]!))) best = i
  }
  return best
}

/** Header name/value pairs for one answer; `retryAfterMs` > 0 adds Retry-After (seconds). */
export function limitHeaders (style: HeaderStyle, policyValue: string, policy: AdvertisedPolicy, d: Decision): Array<[string, string]> {
  const out: Array<[string, string]> = []
  if (style === 'draft' || style === 'both') {
    out.push(['ratelimit-policy', policyValue], ['ratelimit', rateLimitHeader(policy, d)])
  }
  if (style === 'legacy' || style === 'both') {
    out.push(['x-ratelimit-limit', String(d.limit)], ['x-ratelimit-remaining', String(Math.max(0, Math.floor(d.remaining)))],
      ['x-ratelimit-reset', String(ceilSeconds(d.resetMs))])
  }
  return out
}
