// Every default of the config in one place. The schema's `default` annotations and the normalizer read
// from here; durations are in milliseconds. Defaults computed from other values are noted in the schema
// descriptions (node.id, unhealthyInterval, jitter, the health-check timeout cap, timeouts, route strategy).

export const DEFAULTS = {
  node: { host: '127.0.0.1', port: 8080, trustProxy: false, timeouts: { headers: 60_000, body: 60_000, keepAlive: 75_000 } },
  cluster: { name: 'fastify-ha-gateway', heartbeatInterval: 1000 },
  upstream: { strategy: 'round_robin', hashOn: 'ip' },
  target: { weight: 1, metadata: {} },
  healthCheck: { required: true },
  activeHealthCheck: {
    type: 'http',
    method: 'GET',
    path: '/',
    expectedStatuses: ['200-399'],
    interval: 5000,
    timeout: 2000,
    healthyThreshold: 2,
    unhealthyThreshold: 3,
    /** Jitter as a share of the interval (default jitter = interval / 10). */
    jitterRatio: 0.1,
    concurrency: 32,
    requireHealthyOnStart: false,
    shared: false,
  },
  passiveHealthCheck: {
    consecutiveFailures: 5,
    failureStatuses: [502, 503, 504],
    baseEjectionTime: 30_000,
    maxEjectionTime: 300_000,
    maxEjectionPercent: 50,
  },
  recovery: { cooldown: 60_000 },
  recoveryWebhook: { timeout: 5000 },
  failover: {
    maxRetries: 2,
    retryOn: ['connect_failure', 'reset', 'timeout', 502, 503, 504],
    retryDelay: 25,
    maxRetryAfter: 1000,
    retryNonIdempotent: false,
    maxRetryBodySize: 65_536,
    budgetPercent: 20,
    minRetryConcurrency: 3,
  },
  circuitBreaker: {
    errorThreshold: 50,
    volumeThreshold: 20,
    window: 10_000,
    consecutiveFailures: 5,
    openDuration: 5000,
    maxOpenDuration: 60_000,
    halfOpenRequests: 1,
  },
  timeouts: { connect: 5000, headers: 30_000, body: 30_000 },
  route: { websocket: true, stripPrefix: false, preserveHost: false },
  rateLimitRule: { key: 'ip', cost: 1, mode: 'exact', shadow: false },
  rateLimit: { onStoreError: 'fail_open', storeTimeout: 50, headers: 'draft', allowList: [] },
  fallbackResponse: { status: 503 },
  admin: { prefix: '/gateway' },
  metrics: { path: '/metrics', enabled: true },
  cache: { maxBytes: 64 * 1024 * 1024 },
  routeCache: { maxEntries: 10_000, query: 'all' },
  proxy: { keepAliveTimeout: 4000, websocketIdle: 0, maxHeaderSize: 64 * 1024 },
  drain: { delay: 0, timeout: 10_000 },
  log: { level: 'info', requests: 'access', destination: 'stdout' },
  notificationWebhook: { timeout: 5000, maxQueue: 1000 },
  alerts: { interval: 10_000 },
  alertRule: { for: 0, window: '1m', severity: 'warning', cooldown: 300_000 },
  alerter: { timeout: 5000, minSeverity: 'info', format: 'json', retries: 5, maxQueue: 100 },
} as const

function deepFreeze (o: object): void {
  Object.freeze(o)
  for (const v of Object.values(o)) if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) deepFreeze(v)
}
deepFreeze(DEFAULTS)
