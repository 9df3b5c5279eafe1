// The Bearer-token guard of the admin and metrics routes: constant-time check, failures logged
// (client IP and route, never the token) and throttled per client IP (429 with Retry-After).
// Refusals are thrown: the route's error handler (an app's setErrorHandler, else Fastify's) answers them.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { makeTokenCheck } from '../lib/admin-auth.js'
import { AuthThrottle, type AuthThrottleOptions } from '../lib/auth-throttle.js'
import { GatewayError } from '../lib/errors.js'

export type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

export interface GuardOptions {
  /** What the token opens, in logs: admin or metrics. */
  what: string
  throttle?: AuthThrottleOptions
  /** Called for each request that passed the check. */
  onPass?: (request: FastifyRequest) => void
}

export function bearerGuard (token: string, o: GuardOptions): Guard {
  const check = makeTokenCheck(token)
  const throttle = new AuthThrottle(o.throttle)
  return async (request, reply) => {
    const ip = request.ip
    const wait = throttle.blockedFor(ip)
    if (wait > 0) {
      // refused before the check: a throttled client learns nothing about its guess
      const seconds = Math.ceil(wait / 1000)
      reply.code(429).header('retry-after', String(seconds))
      throw new GatewayError('AUTH_THROTTLED', `${seconds} s`)
    }
    if (check(request.headers.authorization)) {
      o.onPass?.(request)
      return
    }
    throttle.fail(ip)
    request.log.warn({ clientIp: ip, method: request.method, route: request.routeOptions.url, throttled: throttle.blockedFor(ip) > 0 },
      `${o.what} authentication failed`)
    reply.code(401).header('www-authenticate', 'Bearer')
    throw new GatewayError('UNAUTHORIZED')
  }
}
