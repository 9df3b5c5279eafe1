// The one schema of the gateway config: the YAML file and the plugin options are the same objects.
// Input types are TypeBox `Static`; normalized types come from `Normalized` (schema-kit.ts).
import { Type, type Static, type TObject } from '@sinclair/typebox'
import { STRATEGIES } from '../balancers/types.js'
import { PROBE_TYPES } from '../health/probe.js'
import { ALERT_FORMATS, SEVERITIES, SINK_TYPES, WINDOWS } from '../monitor/rule.js'
import { STORE_ERROR_POLICIES } from '../ratelimit/outage.js'
import { ALGORITHMS, HEADER_STYLES, LIMIT_MODES } from '../ratelimit/types.js'
import { PROBE_METHODS } from '../routes/methods.js'
import { DEFAULTS } from './defaults.js'
import { Def, Derived, Duration, HttpOrigin, PositiveDuration, HttpUrl, Obj, StatusItem, Statuses, StringEnum, doc,
  withoutDefaults, type NormalAs, type Normalized, type StatusRange } from './schema-kit.js'

const D = DEFAULTS
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+" // RFC 9110 token: header and cookie names
// declared where the code that acts on them lives; the config names them here
export const RATE_LIMIT_ALGORITHMS = ALGORITHMS
export { STORE_ERROR_POLICIES }
export const RETRY_CONDITIONS = ['connect_failure', 'reset', 'timeout'] as const
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

const Strategy = (d: string) => StringEnum(STRATEGIES, d)
const HashOn = (more = '') => Type.String({ pattern: `^(?:ip|path|header:${TOKEN}|cookie:${TOKEN})$`,
  ...doc(`Request key for consistent_hash (header names are matched case-insensitively; a request without the header or cookie hashes on its client IP)${more}`, 'ip, path, header:<name> or cookie:<name>') })
const HOST_PATTERN = '^(?:\\*\\.)?[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?(?:\\.[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?)*$'
const Int = (min: number, description: string, max?: number) =>
  Type.Integer(max === undefined ? { minimum: min, description } : { minimum: min, maximum: max, description })
const Percent = (description: string) => Type.Number({ minimum: 0, maximum: 100, description })
// `host:port`, `[v6]:port`; port 0 takes any free port
const Listen = (description: string) => Type.String({ pattern: '^(?:\\[[0-9A-Fa-f:.]+\\]|[^\\s:\\[\\]/]+):\\d{1,5}$', ...doc(description, 'host:port, e.g. 127.0.0.1:9901 or [::1]:9901') })
const HostPort = Obj({ host: Type.String({ minLength: 1, description: 'Host name or IP' }), port: Int(1, 'TCP port', 65535) }, 'A host and port')

// ---- node and cluster ----
const TrustProxy = (d: string, hint: string) => Type.Union([Type.Boolean(), Int(0, 'hops'), Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }))],
  doc(d, hint))
const N = D.node
const Node = Obj({
  id: Derived(Type.String({ pattern: '^\\S+$', ...doc('Unique id of this node in the cluster (default: <hostname>-<pid>)', 'a non-empty id without spaces') })),
  host: Def(Type.String({ minLength: 1, description: 'Address the node listens on' }), D.node.host),
  port: Def(Int(0, 'Port the node listens on (0: any free port)', 65535), D.node.port),
  trustProxy: Def(TrustProxy('Peers trusted as proxies (as Fastify\'s trustProxy): their X-Forwarded-*, Forwarded and X-Real-IP are passed on and read for the client IP; an untrusted peer\'s are replaced',
    'true/false, a hop count, or addresses/CIDRs to trust'), N.trustProxy),
  timeouts: Def(Obj({
    headers: Def(Duration('Longest time to receive a whole request head (request line and headers); 0: none'), N.timeouts.headers),
    body: Def(Duration('Longest idle time between two chunks of a request body; the client is cut, and its upstream request aborted; 0: none'), N.timeouts.body),
    keepAlive: Def(Duration('Idle time after which a client keep-alive connection is closed'), N.timeouts.keepAlive),
  }, 'Timeouts of client connections'), {}),
  maxConnections: Type.Optional(Int(1, 'Most client connections open at once; more are refused at accept (default: no cap)')),
  tls: Type.Optional(Obj({
    cert: Type.String({ minLength: 1, description: 'Certificate file (PEM, with its chain); read again on SIGHUP' }),
    key: Type.String({ minLength: 1, description: 'Private key file (PEM); read again on SIGHUP' }),
    ca: Type.Optional(Type.String({ minLength: 1, description: 'CA file (PEM) that client certificates must chain to' })),
    requestCert: Def(Type.Boolean({ description: 'Ask clients for a certificate, and refuse those without one that verifies against ca' }), false),
    minVersion: Def(StringEnum(['TLSv1.2', 'TLSv1.3'], 'Lowest TLS version accepted'), 'TLSv1.2'),
  }, 'HTTPS listener (startNode / the CLI); absent: plain HTTP')),
  http2: Def(Type.Boolean({ description: 'HTTP/2 on the TLS listener, HTTP/1.1 by ALPN for clients without it (needs tls)' }), false),
  workers: Def(Type.Union([Int(1, 'processes', 1024), Type.Literal('auto')], doc('Worker processes of the node started by the CLI, behind one listening port; the node stays one node (exact limits, probes once, one /metrics, one cluster member, one judge of config writes, alerts evaluated once). auto: one per available core',
    'a number of processes (1-1024) or auto')), 1),
}, 'This gateway node')

const Redis = Type.Union([
  Type.String({ format: 'redis-url', ...doc('Redis URL', 'a redis:// or rediss:// URL') }),
  Obj({ sentinels: Type.Array(HostPort, { minItems: 1, description: 'Sentinel addresses' }),
    name: Type.String({ minLength: 1, description: 'Sentinel master group name' }),
    password: Type.Optional(Type.String({ description: 'Password of the Redis master and replicas' })),
    sentinelPassword: Type.Optional(Type.String({ description: 'Password of the sentinels' })) }, 'Redis Sentinel'),
  Obj({ nodes: Type.Array(HostPort, { minItems: 1, description: 'Seed nodes of the Redis Cluster' }),
    password: Type.Optional(Type.String({ description: 'Password of the cluster nodes' })) }, 'Redis Cluster'),
], doc('Shared state for the cluster; absent: the node runs alone on in-memory state',
  'a redis:// URL, { sentinels, name } or { nodes }'))

const Cluster = Obj({
  name: Def(Type.String({ pattern: '^[A-Za-z0-9._-]+$', ...doc('Cluster name: prefix of every Redis key', 'letters, digits, ".", "_" or "-"') }), D.cluster.name),
  redis: Type.Optional(Redis),
  heartbeatInterval: Def(PositiveDuration('Membership heartbeat; a node is gone after 3 intervals without one'), D.cluster.heartbeatInterval),
  snapshotPath: Type.Optional(Type.String({ minLength: 1, description: 'File of the last good shared config, used at boot while Redis is down; written 0600, atomically (default: <cluster.name>-<node.id>.json in $XDG_STATE_HOME/fastify-ha-gateway or ~/.local/state/fastify-ha-gateway, a 0700 directory)' })),
}, 'Cluster membership and shared state')

// ---- upstreams ----
const Target = Obj({
  id: Type.String({ pattern: '^\\S+$', ...doc('Target id, unique within its upstream', 'a non-empty id without spaces') }),
  url: HttpOrigin('Origin of the target, http(s)://host[:port] (no path: the request path is forwarded as is)'),
  weight: Def(Type.Number({ minimum: 0, description: 'Relative weight (0: takes no new requests)' }), D.target.weight),
  metadata: Def(Type.Record(Type.String(), Type.Unknown(), { description: 'Free-form data kept with the target' }), D.target.metadata),
}, 'A server of an upstream')

const A = D.activeHealthCheck
const ActiveHealthCheck = Obj({
  type: Def(StringEnum(PROBE_TYPES, 'Probe kind: an HTTP request, or a TCP connect'), A.type),
  method: Def(StringEnum(PROBE_METHODS, 'HTTP method of the probe'), A.method),
  path: Def(Type.String({ pattern: '^/', ...doc('Path of the HTTP probe', 'a path starting with /') }), A.path),
  expectedStatuses: Def(Statuses('Answers that count as healthy: statuses (200), ranges ("200-399") or classes ("2xx")'), A.expectedStatuses),
  host: Type.Optional(Type.String({ minLength: 1, description: 'Host header of the HTTP probe (default: the target\'s host)' })),
  interval: Def(PositiveDuration('Time between probes of a healthy or unknown target'), A.interval),
  unhealthyInterval: Derived(PositiveDuration('Time between probes of an unhealthy target (default: interval)')),
  timeout: Derived(PositiveDuration('Probe timeout (default: 2s, or interval if shorter); may not exceed interval')),
  healthyThreshold: Def(Int(1, 'Passing probes in a row that make a target healthy'), A.healthyThreshold),
  unhealthyThreshold: Def(Int(1, 'Failing probes in a row that make a target unhealthy'), A.unhealthyThreshold),
  jitter: Derived(Duration('Random extra delay, up to this, before each probe (default: interval / 10)')),
  concurrency: Def(Int(1, 'Probes of this upstream in flight at once'), A.concurrency),
  requireHealthyOnStart: Def(Type.Boolean({ description: 'Route to a target only after its first passing probe' }), A.requireHealthyOnStart),
  shared: Def(Type.Boolean({ description: 'With cluster.redis: one node at a time probes (a lease in Redis) and shares each result with the others, so probes do not multiply with the node count' }), A.shared),
}, 'Active probes; absent: none')

const P = D.passiveHealthCheck
const PassiveHealthCheck = Obj({
  consecutiveFailures: Def(Int(1, 'Failures in a row (errors, timeouts, failureStatuses) that eject a target'), P.consecutiveFailures),
  failureStatuses: Def(Statuses('Upstream answers that count as failures'), P.failureStatuses),
  baseEjectionTime: Def(PositiveDuration('Ejection time; the n-th ejection lasts n times this'), P.baseEjectionTime),
  maxEjectionTime: Def(PositiveDuration('Longest ejection'), P.maxEjectionTime),
  maxEjectionPercent: Def(Percent('Largest share of the upstream ejected at once (the last eligible target never is)'), P.maxEjectionPercent),
}, 'Outlier ejection from live traffic; absent: off')

const Recovery = Obj({
  after: Duration('How long a target stays unhealthy before the recovery action runs'),
  cooldown: Def(PositiveDuration('Least time between two recovery actions for one target'), D.recovery.cooldown),
  webhook: Type.Optional(Obj({
    url: HttpUrl('URL the recovery event is POSTed to (JSON)'),
    timeout: Def(PositiveDuration('Webhook request timeout'), D.recoveryWebhook.timeout),
  }, 'Recovery action: an HTTP POST')),
}, 'Auto recovery of targets that stay down; absent: off')

const HealthCheck = Obj({
  active: Type.Optional(ActiveHealthCheck),
  passive: Type.Optional(PassiveHealthCheck),
  slowStart: Type.Optional(Duration('Ramp a target that turns healthy from 10 % to 100 % of its weight over this')),
  recovery: Type.Optional(Recovery),
  required: Def(Type.Boolean({ description: '/ready answers 503 while this upstream has no healthy target' }), D.healthCheck.required),
}, 'Health checking')

/** retryOn after normalization. */
export interface RetryOn { connectFailure: boolean, reset: boolean, timeout: boolean, statuses: StatusRange[] }
const RetryOnItems = Type.Array(Type.Union([StringEnum(RETRY_CONDITIONS, 'A failure kind'), StatusItem()],
  doc('A retry condition', 'connect_failure, reset, timeout, or a status (503), range ("500-504") or class ("5xx")')),
{ description: 'What is retried: connect_failure, reset, timeout and upstream statuses', 'x-kind': 'retryOn' })
const RetryOnSchema = RetryOnItems as NormalAs<typeof RetryOnItems, RetryOn>

const F = D.failover
const Failover = Obj({
  maxRetries: Def(Int(0, 'Tries on other targets after the first one'), F.maxRetries),
  retryOn: Def(RetryOnSchema, F.retryOn),
  perTryTimeout: Type.Optional(Duration('Deadline of each try, until the response headers (0: none)')),
  timeout: Type.Optional(Duration('Deadline of the whole request, all tries included (0: none)')),
  retryDelay: Def(Duration('Backoff base between tries, with full jitter (connect failures retry at once)'), F.retryDelay),
  maxRetryAfter: Def(Duration('Longest upstream Retry-After honoured; a longer one ends the retries'), F.maxRetryAfter),
  retryNonIdempotent: Def(Type.Boolean({ description: 'Retry POST and PATCH without an Idempotency-Key' }), F.retryNonIdempotent),
  maxRetryBodySize: Def(Int(0, 'Largest request body (bytes) buffered so it can be retried'), F.maxRetryBodySize),
  budgetPercent: Def(Percent('Retries in flight allowed, as a share of the active requests of the upstream'), F.budgetPercent),
  minRetryConcurrency: Def(Int(0, 'Retries in flight always allowed, whatever the budget'), F.minRetryConcurrency),
  fallback: Type.Optional(Type.String({ minLength: 1, description: 'Upstream that serves when this one has no eligible target or every try failed' })),
  hedge: Type.Optional(Obj({ delay: Duration('Send one more request to another target after this long without a response') },
    'Hedged requests (idempotent methods only); absent: off')),
}, 'Retries and fallback')

const C = D.circuitBreaker
const CircuitBreaker = Obj({
  errorThreshold: Def(Percent('Error share (%) over the window that opens the circuit'), C.errorThreshold),
  volumeThreshold: Def(Int(1, 'Least requests in the window before errorThreshold applies'), C.volumeThreshold),
  window: Def(PositiveDuration('Rolling window of the error share'), C.window),
  consecutiveFailures: Def(Int(0, 'Failures in a row that open the circuit (0: off)'), C.consecutiveFailures),
  openDuration: Def(PositiveDuration('How long the circuit stays open; doubles with each trip in a row'), C.openDuration),
  maxOpenDuration: Def(PositiveDuration('Longest open period'), C.maxOpenDuration),
  halfOpenRequests: Def(Int(1, 'Trial requests let through while half open'), C.halfOpenRequests),
  maxInFlight: Type.Optional(Int(1, 'Requests in flight above which a target is skipped (default: no cap)')),
}, 'Per-target circuit breaker; absent: off')

const T = D.timeouts
const ProxyTimeouts = Obj({
  connect: Def(Duration('TCP (and TLS) connect timeout; 0: none'), T.connect),
  headers: Def(Duration('Time to the response headers; 0: none'), T.headers),
  body: Def(Duration('Longest idle time between two body chunks; 0: none'), T.body),
  websocketIdle: Def(Duration('Close an upgraded (WebSocket) connection silent both ways this long; 0: never (pings count as traffic)'), D.proxy.websocketIdle),
}, 'Upstream timeouts')
const UpstreamTimeouts = Obj({
  connect: Type.Optional(Duration('Connect timeout (default: proxy.timeouts.connect)')),
  headers: Type.Optional(Duration('Response headers timeout (default: proxy.timeouts.headers)')),
  body: Type.Optional(Duration('Body idle timeout (default: proxy.timeouts.body)')),
}, 'Timeouts of this upstream; each defaults to proxy.timeouts')

const File = (description: string) => Type.String({ minLength: 1, description })
const UpstreamTls = Obj({
  ca: Type.Optional(File('CA certificate file (PEM) that signs the targets\' certificates (default: the system CAs)')),
  cert: Type.Optional(File('Client certificate file (PEM), for targets that ask for one (mTLS); needs key')),
  key: Type.Optional(File('Client key file (PEM); needs cert')),
  servername: Type.Optional(Type.String({ minLength: 1, description: 'TLS server name: SNI and the certificate check (default: the target\'s host)' })),
  rejectUnauthorized: Def(Type.Boolean({ description: 'Refuse a target whose certificate does not verify' }), true),
}, 'TLS to the https targets (proxied requests, upgrades and active probes); files are read at boot and on each applied config')

const Upstream = Obj({
  strategy: Def(Strategy('Load-balancing strategy'), D.upstream.strategy),
  hashOn: Type.Optional(HashOn()),
  targets: Derived(Type.Array(Target, { description: 'Servers of the upstream; at least one unless discovery is set' })),
  healthCheck: Def(HealthCheck, {}),
  failover: Def(Failover, {}),
  circuitBreaker: Type.Optional(CircuitBreaker),
  discovery: Type.Optional(Obj({ service: Type.String({ minLength: 1, description: 'Service name in the registry' }) },
    'Targets from the service registry (added to the static targets)')),
  tls: Type.Optional(UpstreamTls),
  http2: Def(Type.Boolean({ description: 'Offer HTTP/2 to https targets (ALPN; HTTP/1.1 when a target does not take it); http:// targets stay on HTTP/1.1 (no h2c)' }), false),
  timeouts: Derived(UpstreamTimeouts as NormalAs<typeof UpstreamTimeouts, Omit<Normalized<typeof ProxyTimeouts>, 'websocketIdle'>>),
}, 'A named pool of targets')

// ---- rate limiting ----
const R = D.rateLimitRule
const RateLimitRule = Obj({
  algorithm: StringEnum(RATE_LIMIT_ALGORITHMS, 'Counting algorithm'),
  limit: Int(1, 'Requests (cost units) allowed per window'),
  window: PositiveDuration('Window length; for token_bucket, the time to refill `limit`'),
  key: Def(Type.String({ pattern: `^(?:ip|route|header:${TOKEN})$`, ...doc('Who shares a budget', 'ip, route or header:<name>') }), R.key),
  cost: Def(Int(1, 'Units each request spends'), R.cost),
  mode: Def(StringEnum(LIMIT_MODES, 'exact: every decision in Redis; lease: spend a slice of the budget locally'), R.mode),
  shadow: Def(Type.Boolean({ description: 'Count and log, but never refuse' }), R.shadow),
}, 'One rate limit')
function RateLimitRules (description: string) {
  const rules = Type.Union([RateLimitRule, Type.Array(RateLimitRule)],
    { description, 'x-kind': 'oneOrMany', 'x-hint': 'a limit { algorithm, limit, window, ... } or an array of them' })
  return rules as NormalAs<typeof rules, Array<Normalized<typeof RateLimitRule>>>
}

const G = D.rateLimit
const RateLimit = Obj({
  onStoreError: Def(StringEnum(STORE_ERROR_POLICIES, 'What happens while Redis fails'), G.onStoreError),
  storeTimeout: Def(PositiveDuration('Deadline of each Redis call of the limiter'), G.storeTimeout),
  headers: Def(StringEnum(HEADER_STYLES, 'Rate-limit headers: draft RateLimit-*, legacy X-RateLimit-*'), G.headers),
  allowList: Def(Type.Array(Type.String({ format: 'ip-or-cidr', ...doc('An IP or CIDR', 'an IP address or CIDR range') }),
    { description: 'Client IPs or CIDR ranges never limited' }), G.allowList),
  trustProxy: Type.Optional(TrustProxy('Read the limiter\'s client IP from X-Forwarded-For, as Fastify\'s trustProxy (default: node.trustProxy)',
    'true/false, a hop count, or addresses to trust')),
  default: Type.Optional(RateLimitRules('Limits of every route that sets no rateLimit of its own')),
}, 'Rate limiting, gateway-wide')

// ---- routes ----
// Same keys as the upstream's failover, no defaults: unset keys inherit the upstream's values.
const FailoverOverride = withoutDefaults(Obj(Failover.properties, 'Overrides of the upstream\'s failover for this route')) as
  NormalAs<typeof Failover, Normalized<typeof Failover>>

const Route = Obj({
  path: Type.String({ pattern: '^/[^\\s?#*:]*$', ...doc('Path prefix: matches itself and everything below it; forwarded as is',
    'a path starting with / (a prefix: no *, :param, ? or #)') }),
  methods: Type.Optional(Type.Array(Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Z-]+$", ...doc('HTTP method (any upper-case token: GET, HEAD, POST, PROPFIND, PURGE, ...)', 'an upper-case method token: GET, HEAD, POST, PROPFIND, ...') }),
    { minItems: 1, uniqueItems: true, description: 'Methods routed, case-sensitive as HTTP (default: all)' })),
  hosts: Type.Optional(Type.Array(Type.String({ pattern: HOST_PATTERN, ...doc('Host name: exact (api.example.com) or *.example.com (any subdomain, not the apex)', 'a host name or *.domain') }),
    { minItems: 1, uniqueItems: true, description: 'Hosts the route serves, matched on Host (port ignored) before the path; absent: any host (routes with hosts are tried first)' })),
  upstream: Type.Optional(Type.String({ minLength: 1, description: 'Upstream that serves the route (or split)' })),
  split: Type.Optional(Type.Array(Obj({
    upstream: Type.String({ minLength: 1, description: 'Upstream of this side' }),
    weight: Type.Number({ exclusiveMinimum: 0, description: 'Relative share of the requests (> 0)' }),
  }, 'One side of a split'), { minItems: 1, description: 'Weighted split between upstreams instead of upstream (canary, blue-green); sticky by the route\'s hashOn when set' })),
  match: Type.Optional(Obj({
    headers: Type.Record(Type.String({ pattern: `^${TOKEN}$` }), Type.String(), { description: 'Header values a request must carry, all of them (names case-insensitive, values exact)' }),
  }, 'Conditions of this route: a route with match is tried before routes without on the same path and hosts')),
  stripPrefix: Def(Type.Boolean({ description: 'Remove the route path from the path sent upstream (the query string is kept)' }), D.route.stripPrefix),
  rewritePrefix: Type.Optional(Type.String({ pattern: '^/[^\\s?#]*$', ...doc('Replace the route path with this prefix upstream (the query string is kept)', 'a path starting with /') })),
  preserveHost: Def(Type.Boolean({ description: 'Send the client\'s Host upstream (default: the target\'s host)' }), D.route.preserveHost),
  strategy: Derived(Strategy('Strategy for this route (default: the upstream\'s)')),
  hashOn: Type.Optional(HashOn('; on a split route, it also makes the split sticky')),
  rateLimit: Derived(RateLimitRules('Limits of this route (default: rateLimit.default; []: none)')),
  failover: Derived(FailoverOverride),
  cache: Type.Optional(Obj({
    ttl: PositiveDuration('How long a GET answer is cached'),
    maxEntries: Def(Int(1, 'Redis keys this route\'s cache may hold (each cached URL takes one for its Vary record and one per variant); the entries that expire first are evicted past it'), D.routeCache.maxEntries),
    query: Def(Type.Union([StringEnum(['all', 'ignore'], 'all: every query parameter; ignore: none'),
      Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true })],
    doc('Query parameters that are part of the cache key (the upstream always gets the whole query)', 'all, ignore, or a list of parameter names')), D.routeCache.query),
  }, 'Response cache; absent: off')),
  websocket: Def(Type.Boolean({ description: 'Proxy Upgrade requests (WebSocket and others) on this route; false: refused with 403' }), D.route.websocket),
  timeouts: Type.Optional(Obj({
    headers: Type.Optional(Duration('Time to the response headers on this route; 0: none (default: the upstream\'s)')),
    body: Type.Optional(Duration('Longest idle time between two body chunks on this route; 0: none, for long-lived streams such as SSE (default: the upstream\'s)')),
  }, 'Overrides of the upstream\'s response timeouts for this route')),
  fallbackResponse: Type.Optional(Obj({
    status: Def(Int(100, 'Status of the fallback answer', 599), D.fallbackResponse.status),
    body: Type.Optional(Type.Union([Type.String(), Type.Record(Type.String(), Type.Unknown())],
      doc('Body: a string, or an object sent as JSON', 'a string or an object'))),
    headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'Headers of the fallback answer' })),
  }, 'Static answer when no target could serve')),
}, 'A proxied route')

// ---- alerts ----
const AR = D.alertRule
const AlertRuleSchema = Obj({
  name: Type.String({ pattern: '^[A-Za-z0-9._-]+$', ...doc('Rule name, unique', 'letters, digits, ".", "_" or "-"') }),
  when: Type.String({ minLength: 1, ...doc('Condition: a cluster metric, an operator and a number, e.g. "error_rate > 0.05"',
    '"<metric> <op> <number>": error_rate, healthy_ratio, p99_ms, average_response_time_ms, request_rate, unhealthy_targets, nodes, cpu_percent, rss_mb or event_loop_lag_ms; > >= < <= == !=') }),
  for: Def(Duration('How long the condition must hold before the rule fires'), AR.for),
  window: Def(StringEnum(WINDOWS, 'Window of the request metrics (error_rate, p99_ms, ...)'), AR.window),
  severity: Def(StringEnum(SEVERITIES, 'Severity of the alert'), AR.severity),
  cooldown: Def(Duration('Least time between two notifications of a rule that keeps firing (resolving always notifies)'), AR.cooldown),
  upstream: Type.Optional(Type.String({ minLength: 1, description: 'Scope the rule to this upstream (default: the whole cluster)' })),
}, 'An alert rule')

const AL = D.alerter
const Alerter = Obj({
  type: StringEnum(SINK_TYPES, 'log: a log line per notification; webhook: POST it (JSON, retried, never blocks)'),
  url: Type.Optional(HttpUrl('webhook: where alerts are POSTed (required for a webhook)')),
  headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'webhook: extra request headers (e.g. authorization)' })),
  timeout: Def(PositiveDuration('webhook: timeout of each POST'), AL.timeout),
  minSeverity: Def(StringEnum(SEVERITIES, 'Lowest severity sent to this alerter'), AL.minSeverity),
  format: Def(StringEnum(ALERT_FORMATS, 'webhook: body shape: json (the alert), alertmanager (API v2 alerts) or slack (incoming webhook)'), AL.format),
  retries: Def(Int(0, 'webhook: tries after a failed POST, with jittered backoff'), AL.retries),
  maxQueue: Def(Int(1, 'webhook: alerts queued at most; the oldest is dropped past this'), AL.maxQueue),
}, 'An alerter')

const Alerts = Obj({
  interval: Def(PositiveDuration('Time between two evaluations of the rules (by one node of the cluster)'), D.alerts.interval),
  rules: Type.Optional(Type.Array(AlertRuleSchema, { description: 'Alert rules; absent: high_error_rate (error_rate > 0.05) and low_healthy_instances (healthy_ratio < 0.7); []: none' })),
  alerters: Def(Type.Array(Alerter, { description: 'Where notifications go; empty: the log' }), []),
}, 'Cluster alerting')

// ---- the whole file ----
const M = D.metrics
export const GatewayConfigSchema = Obj({
  node: Def(Node, {}),
  cluster: Def(Cluster, {}),
  upstreams: Def(Type.Record(Type.String(), Upstream, {
    description: 'Upstreams by name',
    propertyNames: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' },
    'x-hint': 'names of letters, digits, ".", "_" or "-"',
  }), {}),
  routes: Def(Type.Array(Route, { description: 'Proxied routes' }), []),
  rateLimit: Def(RateLimit, {}),
  admin: Def(Obj({
    prefix: Def(Type.String({ pattern: '^/[^\\s?#*:]*[^/\\s?#*:]$', ...doc('Prefix of the admin routes', 'a path like /gateway (no trailing slash)') }), D.admin.prefix),
    token: Type.Optional(Type.String({ minLength: 1, description: 'Bearer token of the admin routes: at least 16 characters, no whitespace around it; absent: no admin routes' })),
    listen: Type.Optional(Listen('host:port of a listener of the admin routes alone (as Envoy\'s admin port); absent: the traffic port')),
  }, 'Admin routes'), {}),
  metrics: Def(Obj({
    path: Def(Type.String({ pattern: '^/[^\\s?#]*$', ...doc('Path of the Prometheus metrics', 'a path starting with /') }), M.path),
    enabled: Def(Type.Boolean({ description: 'Serve the metrics route' }), M.enabled),
    token: Type.Optional(Type.String({ minLength: 1, description: 'Bearer token the metrics route asks for (as the admin token: at least 16 characters); absent: open to anyone who reaches it' })),
    listen: Type.Optional(Listen('host:port of a listener of the metrics route alone; absent: the traffic port')),
  }, 'Prometheus metrics'), {}),
  cache: Def(Obj({
    maxBytes: Def(Int(1, 'Bytes the response cache may hold in Redis, all routes together (stored answers, their keys and index entries); the entries that expire first are evicted past it'), D.cache.maxBytes),
  }, 'The response cache, gateway-wide'), {}),
  proxy: Def(Obj({
    timeouts: Def(ProxyTimeouts, {}),
    keepAliveTimeout: Def(PositiveDuration('Idle keep-alive time of upstream connections (below the upstream\'s own)'), D.proxy.keepAliveTimeout),
    connections: Type.Optional(Int(1, 'Most connections per upstream origin (default: no cap)')),
    maxHeaderSize: Def(Int(1024, 'Largest upstream response head, in bytes (status line and headers); a larger one is a 502 FHG_ERR_UPSTREAM_HEADERS_TOO_LARGE that does not count against the target'), D.proxy.maxHeaderSize),
  }, 'The proxy\'s HTTP client'), {}),
  notifications: Def(Type.Array(Obj({
    type: StringEnum(SINK_TYPES, 'log: log every failover event; webhook: POST it as JSON (never blocks a request)'),
    url: Type.Optional(HttpUrl('webhook: where the events are POSTed (required for a webhook)')),
    timeout: Def(PositiveDuration('webhook: timeout of each POST'), D.notificationWebhook.timeout),
    maxQueue: Def(Int(1, 'webhook: events queued at most; the oldest is dropped past this'), D.notificationWebhook.maxQueue),
    headers: Type.Optional(Type.Record(Type.String(), Type.String(), { description: 'webhook: extra request headers (e.g. authorization)' })),
  }, 'A failover notifier'),
  { description: 'Where failover events (retry, retries_exhausted, fallback_used, circuit_*) go; empty: the log' }), []),
  alerts: Def(Alerts, {}),
  drain: Def(Obj({
    delay: Def(Duration('On shutdown, time between turning not-ready and closing the listener'), D.drain.delay),
    timeout: Def(Duration('On shutdown, longest wait for requests in flight'), D.drain.timeout),
  }, 'Graceful shutdown'), {}),
  log: Def(Obj({
    level: Def(StringEnum(LOG_LEVELS, 'Level of the node\'s own log (GATEWAY_LOG_LEVEL overrides it)'), D.log.level),
    requests: Def(StringEnum(['access', 'off'], 'access: one JSON line per request, written when its response ends; off: none'), D.log.requests),
    destination: Def(Type.String({ minLength: 1, ...doc('Where both logs go, buffered (flushed every second, on exit and after a drain): stdout, or a file (appended to; reopened on SIGHUP)', 'stdout or a file path') }), D.log.destination),
  }, 'The log of a node started by the CLI (or startNode with logger: true)'), {}),
}, 'fastify-ha-gateway configuration')

/** What a user writes: the YAML file or the plugin options. */
export type GatewayConfigInput = Static<typeof GatewayConfigSchema>
/** What validateConfig returns: defaults filled, durations in ms, per-route settings resolved. */
export type GatewayConfig = Normalized<typeof GatewayConfigSchema>

export type UpstreamConfigInput = Static<typeof Upstream>
export type TargetConfigInput = Static<typeof Target>
export type RouteConfigInput = Static<typeof Route>
export type NodeConfig = GatewayConfig['node']
export type ClusterConfig = GatewayConfig['cluster']
export type RedisConfig = Normalized<typeof Redis>
export type UpstreamConfig = GatewayConfig['upstreams'][string]
export type TargetConfig = UpstreamConfig['targets'][number]
export type HealthCheckConfig = UpstreamConfig['healthCheck']
export type ActiveHealthCheckConfig = Normalized<typeof ActiveHealthCheck>
export type PassiveHealthCheckConfig = Normalized<typeof PassiveHealthCheck>
export type RecoveryConfig = Normalized<typeof Recovery>
export type FailoverConfig = UpstreamConfig['failover']
export type CircuitBreakerConfig = Normalized<typeof CircuitBreaker>
export type TimeoutsConfig = UpstreamConfig['timeouts']
export type RouteConfig = GatewayConfig['routes'][number]
export type RateLimitRuleConfig = Normalized<typeof RateLimitRule>
export type RateLimitConfig = GatewayConfig['rateLimit']
export type AdminConfig = GatewayConfig['admin']
export type MetricsConfig = GatewayConfig['metrics']
export type ProxyConfig = GatewayConfig['proxy']
export type DrainConfig = GatewayConfig['drain']
export type AlertsConfig = GatewayConfig['alerts']
export type LogConfig = GatewayConfig['log']
export type { StatusRange }
