import { createHash, timingSafeEqual } from 'node:crypto'

/** Shortest admin or metrics token accepted (a 16-character random token is ~95 bits). */
export const MIN_TOKEN_LENGTH = 16

/**
 * Bearer-token check in constant time: both sides are hashed first so the
 * comparison neither leaks the token's length nor short-circuits.
 */
export function makeTokenCheck (token: string): (authorization: string | undefined) => boolean {
  const expected = createHash('sha256').update(token).digest()
  return (authorization) => {
    if (typeof authorization !== 'string' || !authorization.startsWith('Bearer ')) return false
    const given = createHash('sha256').update(authorization.slice(7).trim()).digest()
    return timingSafeEqual(given, expected)
  }
}

/** What is wrong with a configured token, or undefined when it is fit to use (never quotes the token). */
export function tokenProblem (token: string): string | undefined {
  if (token.trim() !== token) return 'has whitespace around it (a stray newline or space from an env file?)'
  if (token.length < MIN_TOKEN_LENGTH) return `is ${token.length} characters long; use at least ${MIN_TOKEN_LENGTH} (e.g. openssl rand -hex 16)`
  return undefined
}

/** A short, stable name of a token for logs: the first 12 hex digits of its SHA-256, never the token itself. */
export function tokenFingerprint (token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`
}
