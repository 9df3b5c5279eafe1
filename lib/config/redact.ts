// The one place that decides what a secret looks like. Config errors, log lines and admin views pass
// values through here; none of them ever shows a password, a token or a header value of a notifier.

export const REDACTED = '***'

/** Config keys whose value is a secret wherever they appear (compared case-insensitively). */
const SECRET_KEYS = new Set(['token', 'password', 'sentinelpassword', 'secret', 'authorization', 'apikey'])
/** Config keys that hold a map of header values (webhook and notifier headers may carry credentials). */
const HEADER_MAPS = new Set(['headers'])

/** Whether a config key names a secret (`token`, `password`, `sentinelPassword`, ...). */
export function isSecretKey (key: string | number): boolean {
  return typeof key === 'string' && SECRET_KEYS.has(key.toLowerCase())
}

// scheme://user:password@  or  scheme://token@  (userinfo of any URL in any text)
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:"']*)(?::([^\s/?#@"']*))?@/gi

/** Credentials of every URL in `text` hidden: `redis://:s3cret@host` -> `redis://:***@host`, `https://tok@h` -> `https://***@h`. */
export function redactText (text: string): string {
  if (!text.includes('@')) return text
  return text.replace(USERINFO, (_m, scheme: string, user: string, pass: string | undefined) =>
    pass === undefined ? `${scheme}${REDACTED}@` : `${scheme}${user}:${REDACTED}@`)
}

/**
 * A copy of `value` (a config, or any part of one) safe to print: secret keys and header values replaced by
 * `***`, URL credentials hidden in every string. Never mutates `value`; cycles and depth are bounded.
 */
export function redactConfig<T> (value: T): T {
  return walk(value, undefined, 0) as T
}

function walk (v: unknown, key: string | number | undefined, depth: number): unknown {
  if (typeof v === 'string') return key !== undefined && isSecretKey(key) ? REDACTED : redactText(v)
  if (v === null || typeof v !== 'object' || depth > 64) return v
  if (key !== undefined && isSecretKey(key)) return REDACTED
  if (Array.isArray(v)) return v.map((x, i) => walk(x, i, depth + 1))
  const headers = typeof key === 'string' && HEADER_MAPS.has(key)
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) {
    Object.defineProperty(out, k, { value: headers ? REDACTED : walk(x, k, depth + 1), enumerable: true, writable: true, configurable: true })
  }
  return out
}

/** A log serializer for errors (pino's `err` shape) with URL credentials hidden in the message and stack. */
export function redactError (err: Error): { type: string, message: string, stack: string, [key: string]: unknown } {
  // `err` may be a message already (log.warn({ err: err.message })): hidden credentials, same shape
  if (!(err instanceof Error)) return (typeof err === 'string' ? redactText(err) : err) as unknown as ReturnType<typeof redactError>
  const e = err as Error & { code?: unknown, statusCode?: unknown }
  const out: { type: string, message: string, stack: string, [key: string]: unknown } = {
    type: e.name, message: redactText(String(e.message)), stack: redactText(String(e.stack ?? '')),
  }
  if (e.code !== undefined) out.code = e.code
  if (e.statusCode !== undefined) out.statusCode = e.statusCode
  return out
}
