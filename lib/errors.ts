// One hub for every error the gateway answers with: code, HTTP status and message live here only.

export interface GatewayErrorDef {
  readonly code: string
  readonly statusCode: number
  readonly message: string
  /** When the gateway answers with it (the docs' error table is made from this). */
  readonly when: string
}

/** Every code the gateway answers with, one row each: `errorsTableMarkdown()` prints them for the docs. */
export const ERRORS = {
  BAD_REQUEST: { code: 'FHG_ERR_BAD_REQUEST', statusCode: 400, message: '%s', when: 'the client caused the failure before a byte reached the upstream (it left mid-body, or sent a request the HTTP client refuses); no target is blamed and no retry is made' },
  BAD_PATH: { code: 'FHG_ERR_BAD_PATH', statusCode: 400, message: 'Request path refused: %s', when: 'a request path a URL parser would read differently (backslash, encoded slash or backslash, dot segment, `#`, leading `//`), refused before routing' },
  UNAUTHORIZED: { code: 'FHG_ERR_UNAUTHORIZED', statusCode: 401, message: 'Missing or invalid admin token', when: 'an admin route without `Authorization: Bearer <admin.token>` (or the metrics route without `metrics.token`)' },
  INVALID_CONFIG: { code: 'FHG_ERR_INVALID_CONFIG', statusCode: 400, message: 'Invalid gateway configuration: %s', when: 'a config (file, plugin options, admin PUT) fails validation; at boot the process exits listing each bad key' },
  TARGET_NOT_FOUND: { code: 'FHG_ERR_TARGET_NOT_FOUND', statusCode: 404, message: 'Target "%s" not found', when: 'a target change (admin API or code) names a target the upstream does not have' },
  TARGET_EXISTS: { code: 'FHG_ERR_TARGET_EXISTS', statusCode: 409, message: 'Target "%s" already exists', when: 'a target change adds a target id the upstream already has' },
  CONFIG_CONFLICT: { code: 'FHG_ERR_CONFIG_CONFLICT', statusCode: 409, message: 'Stale config version: the store holds version %s', when: 'a config PUT whose If-Match names a version older than the shared store\'s' },
  PRECONDITION_REQUIRED: { code: 'FHG_ERR_PRECONDITION_REQUIRED', statusCode: 428, message: 'If-Match with the config version is required: %s', when: 'a config PUT without If-Match' },
  AUTH_THROTTLED: { code: 'FHG_ERR_AUTH_THROTTLED', statusCode: 429, message: 'Too many failed authentications from this address: retry in %s', when: 'a client IP failed admin or metrics authentication more often than the throttle allows (Retry-After says when)' },
  CONFIG_NOT_APPLIED: { code: 'FHG_ERR_CONFIG_NOT_APPLIED', statusCode: 500, message: 'Config version %s', when: 'a config PUT was valid but this node could not apply it; nothing was stored and the node runs the previous version in full' },
  RATE_LIMITED: { code: 'FHG_ERR_RATE_LIMITED', statusCode: 429, message: 'Rate limit exceeded: retry in %s', when: 'a route\'s rate limit is spent for this key (Retry-After says when to come back)' },
  UNKNOWN_UPSTREAM: { code: 'FHG_ERR_UNKNOWN_UPSTREAM', statusCode: 500, message: 'Route names unknown upstream "%s"', when: 'a code route names an upstream the gateway does not have' },
  UPSTREAM_CONNECT: { code: 'FHG_ERR_UPSTREAM_CONNECT', statusCode: 502, message: 'Could not connect to upstream "%s"', when: 'the connection to the chosen target was refused or failed (after any retries)' },
  UPSTREAM_RESET: { code: 'FHG_ERR_UPSTREAM_RESET', statusCode: 502, message: 'Upstream "%s" closed the connection', when: 'the target closed the connection before a whole answer' },
  UPSTREAM_BAD_RESPONSE: { code: 'FHG_ERR_UPSTREAM_BAD_RESPONSE', statusCode: 502, message: 'Upstream "%s" failed', when: 'the try failed otherwise (bad HTTP from the target, body error)' },
  UPSTREAM_HEADERS_TOO_LARGE: { code: 'FHG_ERR_UPSTREAM_HEADERS_TOO_LARGE', statusCode: 502, message: 'Upstream "%s" sent a response head larger than proxy.maxHeaderSize', when: 'the target\'s response head (status line and headers) passed `proxy.maxHeaderSize`; not retried, and not counted against the target (passive health, breaker)' },
  RETRIES_EXHAUSTED: { code: 'FHG_ERR_RETRIES_EXHAUSTED', statusCode: 502, message: 'Every try to upstream "%s" failed', when: 'failover retried and every try failed' },
  NO_HEALTHY_TARGET: { code: 'FHG_ERR_NO_HEALTHY_TARGET', statusCode: 503, message: 'No healthy target in upstream "%s"', when: 'every target of the upstream is unhealthy, ejected or draining' },
  CIRCUIT_OPEN: { code: 'FHG_ERR_CIRCUIT_OPEN', statusCode: 503, message: 'Every target of upstream "%s" has an open circuit', when: 'the circuit breaker of every eligible target is open' },
  REDIS_UNAVAILABLE: { code: 'FHG_ERR_REDIS_UNAVAILABLE', statusCode: 503, message: 'Redis is unavailable: %s', when: 'a cluster call (config PUT, shared state) needs Redis and Redis does not answer in time, or a config write reached too few replicas' },
  PRIMARY_UNAVAILABLE: { code: 'FHG_ERR_PRIMARY_UNAVAILABLE', statusCode: 503, message: 'The node\'s primary process did not answer: %s', when: 'node.workers without Redis: a config PUT goes to the primary, which holds the node\'s config, and it did not answer within 5 s (the write may still be applied: read the version before retrying)' },
  RATE_LIMIT_STORE_TIMEOUT: { code: 'FHG_ERR_RATE_LIMIT_STORE_TIMEOUT', statusCode: 503, message: 'Rate-limit store gave no answer within %s ms', when: 'the rate-limit store missed its deadline (logged and counted; the client gets what onStoreError says: allowed, the local limit, or FHG_ERR_RATE_LIMIT_UNAVAILABLE)' },
  RATE_LIMIT_STORE_FAILED: { code: 'FHG_ERR_RATE_LIMIT_STORE_FAILED', statusCode: 503, message: 'Rate-limit store failed: %s', when: 'the rate-limit store answered with an error (handled as a missed deadline)' },
  RATE_LIMIT_UNAVAILABLE: { code: 'FHG_ERR_RATE_LIMIT_UNAVAILABLE', statusCode: 503, message: 'Rate limiter unavailable: retry later', when: 'the rate-limit store fails and the rule\'s onStoreError is fail_closed' },
  UPSTREAM_TIMEOUT: { code: 'FHG_ERR_UPSTREAM_TIMEOUT', statusCode: 504, message: 'Upstream "%s" timed out', when: 'the connect, headers or body timeout of the try (or failover.timeout) passed' },
  NOT_CACHED: { code: 'FHG_ERR_NOT_CACHED', statusCode: 504, message: 'only-if-cached: no stored answer%s', when: 'a request with Cache-Control: only-if-cached has no stored answer' },
  UPGRADE_REFUSED: { code: 'FHG_ERR_UPGRADE_REFUSED', statusCode: 403, message: 'Route "%s" does not take Upgrade requests', when: 'an Upgrade (WebSocket) request on a route with `websocket: false`' },
  CLOSING: { code: 'FHG_ERR_CLOSING', statusCode: 503, message: 'The node is shutting down', when: 'an Upgrade request arrives while the node drains' },
} as const satisfies Record<string, GatewayErrorDef>

export type GatewayErrorName = keyof typeof ERRORS

/** The error table of the docs: code, status, when. */
export function errorsTableMarkdown (): string {
  const defs: GatewayErrorDef[] = Object.values(ERRORS)
  const rows = defs.sort((a, b) => a.statusCode - b.statusCode).map((e) => `| \`${e.code}\` | ${e.statusCode} | ${e.when} |`)
  return ['| code | status | when |', '| --- | --- | --- |', ...rows].join('\n')
}

/** An error with a stable code and the HTTP status the gateway answers it with. */
export class GatewayError extends Error {
  readonly code: string
  readonly statusCode: number
  /** `options.statusCode` answers with another status than the code's own (a refusal that carried its own status). */
  constructor (name: GatewayErrorName, arg = '', options?: { cause?: unknown, statusCode?: number }) {
    const def = ERRORS[name]
    super(def.message.replace('%s', arg), options)
    this.name = 'GatewayError'
    this.code = def.code
    this.statusCode = options?.statusCode ?? def.statusCode
  }

  toJSON (): { statusCode: number, code: string, error: string, message: string } {
    return { statusCode: this.statusCode, code: this.code, error: httpReason(this.statusCode), message: this.message }
  }
}

const UPSTREAM_FAULTS: ReadonlySet<string> = new Set([
  ERRORS.UPSTREAM_CONNECT.code, ERRORS.UPSTREAM_RESET.code, ERRORS.UPSTREAM_BAD_RESPONSE.code, ERRORS.RETRIES_EXHAUSTED.code,
  ERRORS.NO_HEALTHY_TARGET.code, ERRORS.CIRCUIT_OPEN.code, ERRORS.UPSTREAM_TIMEOUT.code,
])

/**
 * Is `err` a proxy answer for an upstream's fault (502, 503, 504: refused, reset, timed out, no healthy target,
 * open circuits)? Worth a warning, not an error log with a stack: nothing in the node failed.
 */
export function isUpstreamFault (err: unknown): err is GatewayError {
  return err instanceof GatewayError && UPSTREAM_FAULTS.has(err.code)
}

/** What raising an error needs of a Fastify reply (a structural type: lib/ stays free of Fastify). */
export interface ErrorReply {
  readonly sent: boolean
  code (statusCode: number): unknown
  send (payload?: unknown): unknown
}

/**
 * The gateway error mechanism: every answer the gateway gives itself is raised through Fastify, never written
 * by hand, so the route's error handler answers it: an app's `setErrorHandler` sees (and may shape) a 429, a 401,
 * a 502; with none, Fastify's default handler writes what the gateway wrote by hand before: the status, any
 * headers set on the reply before (Retry-After, RateLimit-*, WWW-Authenticate), `application/json; charset=utf-8`
 * and `{"statusCode","code","error","message"}` in that order (fastify/lib/error-handler.js fallbackErrorHandler).
 * In a hook or handler, throwing or `done(err)` is the same; this is for the places that answer from a callback
 * (the proxy's reply-from hooks, a rate-limit decision settled later). The status is set first, so an error
 * handler reads it from `reply.statusCode` too (and a status set earlier, say an upstream's, cannot win).
 * A body with more than the four fields (ConfigError's `issues`) needs the route to declare ERROR_BODY_SCHEMA.
 */
export function raiseError (reply: ErrorReply, err: Error & { statusCode: number }): void {
  if (reply.sent) return
  reply.code(err.statusCode)
  reply.send(err)
}

/**
 * Response schema (for `response: { '4xx': ERROR_BODY_SCHEMA }`) of a route whose errors carry more than Fastify's
 * four fields: Fastify serializes a raised error with it (through the error's `toJSON`), in the order listed here,
 * which is the order of GatewayError.toJSON and its subclasses. Other keys pass (an app's error handler may send
 * a body of its own shape on the route); an error without `toJSON` (Fastify's own) still gets its four fields only.
 */
export const ERROR_BODY_SCHEMA = {
  type: 'object',
  properties: {
    statusCode: { type: 'number' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' },
    /** ConfigError: every problem of the config, by path. */
    issues: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
    /** ConfigConflictError: the version the store holds. */
    currentVersion: { type: 'number' },
  },
  additionalProperties: true,
} as const

const REASONS: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 428: 'Precondition Required', 429: 'Too Many Requests',
  500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
}
export function httpReason (status: number): string {
  return REASONS[status] ?? 'Error'
}
