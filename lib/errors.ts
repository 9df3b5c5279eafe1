// One hub for every error the gateway answers with: code, HTTP status and message live here only.

export interface GatewayErrorDef {
  readonly code: string
  readonly statusCode: number
  readonly message: string
}

export const ERRORS = {
  NO_HEALTHY_TARGET: { code: 'FHG_ERR_NO_HEALTHY_TARGET', statusCode: 503, message: 'No healthy target in upstream "%s"' },
  UNKNOWN_UPSTREAM: { code: 'FHG_ERR_UNKNOWN_UPSTREAM', statusCode: 500, message: 'Route names unknown upstream "%s"' },
  UPSTREAM_CONNECT: { code: 'FHG_ERR_UPSTREAM_CONNECT', statusCode: 502, message: 'Could not connect to upstream "%s"' },
  UPSTREAM_RESET: { code: 'FHG_ERR_UPSTREAM_RESET', statusCode: 502, message: 'Upstream "%s" closed the connection' },
  UPSTREAM_BAD_RESPONSE: { code: 'FHG_ERR_UPSTREAM_BAD_RESPONSE', statusCode: 502, message: 'Upstream "%s" failed' },
  UPSTREAM_TIMEOUT: { code: 'FHG_ERR_UPSTREAM_TIMEOUT', statusCode: 504, message: 'Upstream "%s" timed out' },
  UNAUTHORIZED: { code: 'FHG_ERR_UNAUTHORIZED', statusCode: 401, message: 'Missing or invalid admin token' },
  INVALID_CONFIG: { code: 'FHG_ERR_INVALID_CONFIG', statusCode: 400, message: 'Invalid gateway configuration: %s' },
  TARGET_EXISTS: { code: 'FHG_ERR_TARGET_EXISTS', statusCode: 409, message: 'Target "%s" already exists' },
  TARGET_NOT_FOUND: { code: 'FHG_ERR_TARGET_NOT_FOUND', statusCode: 404, message: 'Target "%s" not found' },
  CIRCUIT_OPEN: { code: 'FHG_ERR_CIRCUIT_OPEN', statusCode: 503, message: 'Every target of upstream "%s" has an open circuit' },
  RETRIES_EXHAUSTED: { code: 'FHG_ERR_RETRIES_EXHAUSTED', statusCode: 502, message: 'Every try to upstream "%s" failed' },
  REDIS_UNAVAILABLE: { code: 'FHG_ERR_REDIS_UNAVAILABLE', statusCode: 503, message: 'Redis is unavailable: %s' },
  PRECONDITION_REQUIRED: { code: 'FHG_ERR_PRECONDITION_REQUIRED', statusCode: 428, message: 'If-Match with the config version is required: %s' },
  CONFIG_CONFLICT: { code: 'FHG_ERR_CONFIG_CONFLICT', statusCode: 409, message: 'Stale config version: the store holds version %s' },
  RATE_LIMITED: { code: 'FHG_ERR_RATE_LIMITED', statusCode: 429, message: 'Rate limit exceeded: retry in %s' },
  RATE_LIMIT_STORE_TIMEOUT: { code: 'FHG_ERR_RATE_LIMIT_STORE_TIMEOUT', statusCode: 503, message: 'Rate-limit store gave no answer within %s ms' },
  RATE_LIMIT_STORE_FAILED: { code: 'FHG_ERR_RATE_LIMIT_STORE_FAILED', statusCode: 503, message: 'Rate-limit store failed: %s' },
  NOT_CACHED: { code: 'FHG_ERR_NOT_CACHED', statusCode: 504, message: 'only-if-cached: no stored answer%s' },
  UPGRADE_REFUSED: { code: 'FHG_ERR_UPGRADE_REFUSED', statusCode: 403, message: 'Route "%s" does not take Upgrade requests' },
  RATE_LIMIT_UNAVAILABLE: { code: 'FHG_ERR_RATE_LIMIT_UNAVAILABLE', statusCode: 503, message: 'Rate limiter unavailable: retry later' },
} as const satisfies Record<string, GatewayErrorDef>

export type GatewayErrorName = keyof typeof ERRORS

/** An error with a stable code and the HTTP status the gateway answers it with. */
export class GatewayError extends Error {
  readonly code: string
  readonly statusCode: number
  constructor (name: GatewayErrorName, arg = '', options?: { cause?: unknown }) {
    const def = ERRORS[name]
    super(def.message.replace('%s', arg), options)
    this.name = 'GatewayError'
    this.code = def.code
    this.statusCode = def.statusCode
  }

  toJSON (): { statusCode: number, code: string, error: string, message: string } {
    return { statusCode: this.statusCode, code: this.code, error: httpReason(this.statusCode), message: this.message }
  }
}

const REASONS: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 409: 'Conflict', 428: 'Precondition Required', 429: 'Too Many Requests',
  500: 'Internal Server Error', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout',
}
export function httpReason (status: number): string {
  return REASONS[status] ?? 'Error'
}
