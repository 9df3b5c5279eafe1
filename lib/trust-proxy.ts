// Which peers are trusted proxies: Fastify's `trustProxy` forms, compiled once (node.trustProxy is shared by
// Fastify, the forwarding headers of the proxy and the rate limiter's client IP).
import proxyAddr from '@fastify/proxy-addr'

export type TrustProxy = boolean | number | string | string[]

/** (address, hop index from the socket) -> trusted; proxy-addr's shape. */
export type TrustFn = (addr: string, i: number) => boolean

/**
 * The trust function of `trustProxy`, or undefined when nothing is trusted (false, absent, 0 hops).
 * true: every hop; a number: that many hops; a string (comma-separated) or array: addresses, CIDRs and
 * proxy-addr's names (`loopback`, `linklocal`, `uniquelocal`).
 */
export function compileTrust (trustProxy: TrustProxy | undefined): TrustFn | undefined {
  if (trustProxy === undefined || trustProxy === false || trustProxy === 0) return undefined
  if (trustProxy === true) return () => true
  if (typeof trustProxy === 'number') { const hops = trustProxy; return (_a, i) => i < hops }
  return proxyAddr.compile(typeof trustProxy === 'string' ? trustProxy.split(',').map((s) => s.trim()) : trustProxy)
}
