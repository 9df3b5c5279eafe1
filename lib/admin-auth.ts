import { createHash, timingSafeEqual } from 'node:crypto'

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
