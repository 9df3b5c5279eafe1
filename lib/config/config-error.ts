import { GatewayError } from '../errors.js'
import { redactText } from './redact.js'

/** One problem in a config: a dotted path (`upstreams.users.targets[1].url`) and what is wrong there. */
export interface ConfigIssue {
  path: string
  message: string
}

/** Every problem found in one config, so a user fixes them all in one pass. Code FHG_ERR_INVALID_CONFIG, 400. */
/** Issues reported at most: past this, one issue counts the rest (14k bad routes must not cost a 14k-line answer). */
export const MAX_ISSUES = 50
/** The issue that stands for `n` issues left out. */
export function moreIssues (n: number): ConfigIssue {
  return { path: '', message: `... and ${n} more issue${n === 1 ? '' : 's'} (only the first ${MAX_ISSUES} are listed)` }
}

export class ConfigError extends GatewayError {
  readonly issues: ConfigIssue[]
  constructor (issues: ConfigIssue[], options?: { cause?: unknown }) {
    if (issues.length > MAX_ISSUES + 1) issues = [...issues.slice(0, MAX_ISSUES), moreIssues(issues.length - MAX_ISSUES)]
    // a message may quote a value: never a URL's credentials
    issues = issues.map((i) => ({ path: i.path, message: redactText(i.message) }))
    super('INVALID_CONFIG', issues.map(formatIssue).join('; '), options)
    this.name = 'ConfigError'
    this.issues = issues
  }

  override toJSON (): ReturnType<GatewayError['toJSON']> & { issues: ConfigIssue[] } {
    return { ...super.toJSON(), issues: this.issues }
  }
}

export function formatIssue (issue: ConfigIssue): string {
  return issue.path === '' ? issue.message : `${issue.path}: ${issue.message}`
}

/** JSON-pointer-ish segments -> `upstreams.users.targets[1].url`; names that are not plain get `["..."]`. */
export function joinPath (segments: ReadonlyArray<string | number>): string {
  let out = ''
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`
    else if (/^[A-Za-z0-9_-]+$/.test(s)) out += out === '' ? s : `.${s}`
    else out += `[${JSON.stringify(s)}]`
  }
  return out
}
