import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ConfigError, DEFAULTS, describeOptions, isNormalizedConfig, loadConfigFile, parseConfigText, parseDuration,
  statusIn, validateConfig, type ConfigIssue,
} from '../lib/config/index.js'

// DESIGN.md's example, verbatim.
const DESIGN_YAML = `
node: { id: gw-1, host: 127.0.0.1, port: 8080 }
cluster:
  name: api-gateway-cluster
  redis: redis://127.0.0.1:6379     # or { sentinels: [...], name } or { nodes: [...] } for Redis Cluster; absent: single node, memory
  heartbeatInterval: 1s
upstreams:
  users:
    strategy: weighted_round_robin
    targets:
      - { id: users-1, url: http://127.0.0.1:3001, weight: 100 }
      - { id: users-2, url: http://127.0.0.1:3002, weight: 50 }
    healthCheck:
      active: { type: http, path: /health, interval: 1s, timeout: 500ms, healthyThreshold: 2, unhealthyThreshold: 2 }
      passive: { consecutiveFailures: 3, baseEjectionTime: 5s, maxEjectionPercent: 50 }
    failover: { maxRetries: 2, perTryTimeout: 2s, fallback: users-backup }
  users-backup:
    targets: [{ id: backup-1, url: http://127.0.0.1:3009 }]   # strategy defaults to round_robin
  sessions:
    strategy: consistent_hash
    hashOn: header:x-user-id          # ip | header:<name> | cookie:<name> | path
    targets: [{ id: s-1, url: http://127.0.0.1:3011 }, { id: s-2, url: http://127.0.0.1:3012 }]
routes:
  - { path: /users, upstream: users, strategy: least_connections,
      rateLimit: { algorithm: sliding_window, limit: 100, window: 1s, key: ip } }
rateLimit: { onStoreError: fail_open }
admin: { prefix: /gateway, token: \${GATEWAY_ADMIN_TOKEN} }
metrics: { path: /metrics }
`
const ENV = { GATEWAY_ADMIN_TOKEN: 'design-admin-token-1' }

/** A small valid config, fresh each time, for the bad-input cases to break. */
function base (): any {
  return {
    upstreams: { users: { targets: [{ id: 'u1', url: 'http://127.0.0.1:3001' }, { id: 'u2', url: 'http://127.0.0.1:3002' }] } },
    routes: [{ path: '/users', upstream: 'users' }],
  }
}

function issuesOf (fn: () => unknown): ConfigIssue[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.issues
    throw err
  }
  throw new Error('expected a ConfigError')
}

interface Asserts {
  ok (v: unknown, message: string, extra: { issues: ConfigIssue[] }): unknown
  match (found: unknown, pattern: string, message: string): unknown
}

function expectIssue (t: Asserts, issues: ConfigIssue[], path: string, ...fragments: string[]): void {
  const hit = issues.find(i => i.path === path)
  t.ok(hit, `an issue at ${path}`, { issues })
  for (const f of fragments) t.match(hit?.message ?? '', f, `${path} message mentions ${f}`)
}

t.test('DESIGN.md example validates and normalizes', async (t) => {
  const c = parseConfigText(DESIGN_YAML, ENV, 'design.yaml')
  t.equal(c.node.id, 'gw-1')
  t.equal(c.node.port, 8080)
  t.equal(c.cluster.redis, 'redis://127.0.0.1:6379')
  t.equal(c.cluster.heartbeatInterval, 1000, 'durations become ms')
  const users = c.upstreams.users
  t.equal(users.strategy, 'weighted_round_robin')
  t.same(users.targets.map(x => x.weight), [100, 50])
  t.equal(users.healthCheck.active?.interval, 1000)
  t.equal(users.healthCheck.active?.timeout, 500)
  t.equal(users.healthCheck.active?.unhealthyInterval, 1000, 'unhealthyInterval defaults to interval')
  t.equal(users.healthCheck.passive?.baseEjectionTime, 5000)
  t.equal(users.healthCheck.passive?.maxEjectionTime, DEFAULTS.passiveHealthCheck.maxEjectionTime)
  t.same(users.healthCheck.passive?.failureStatuses, [[502, 504]])
  t.equal(users.failover.perTryTimeout, 2000)
  t.equal(users.failover.fallback, 'users-backup')
  t.same(users.timeouts, DEFAULTS.timeouts, 'upstream timeouts default to proxy.timeouts')
  const backup = c.upstreams['users-backup']
  t.equal(backup.strategy, 'round_robin', 'strategy defaults to round_robin')
  t.equal(backup.targets[0].weight, 1, 'weight defaults to 1')
  t.same(backup.targets[0].metadata, {})
  t.equal(c.upstreams.sessions.hashOn, 'header:x-user-id')
  const route = c.routes[0]
  t.equal(route.strategy, 'least_connections')
  t.same(route.rateLimit, [{ algorithm: 'sliding_window', limit: 100, window: 1000, key: 'ip', cost: 1, mode: 'exact', shadow: false }])
  t.equal(route.failover.maxRetries, 2, 'route failover inherits the upstream\'s')
  t.equal(route.failover.fallback, 'users-backup')
  t.equal(c.rateLimit.onStoreError, 'fail_open')
  t.equal(c.rateLimit.storeTimeout, 50)
  t.same(c.admin, { prefix: '/gateway', token: 'design-admin-token-1' })
  t.same(c.metrics, { path: '/metrics', enabled: true })
  t.same(c.drain, { delay: DEFAULTS.drain.delay, timeout: DEFAULTS.drain.timeout })
  t.ok(isNormalizedConfig(c), 'marked as normalized')
  t.notOk(Object.keys(c).some(k => k.startsWith('Symbol')), 'the mark is not enumerable')
})

t.test('each bad input fails naming the key', async (t) => {
  const cases: Array<[string, (c: any) => void, string, ...string[]]> = [
    ['unknown strategy', c => { c.upstreams.users.strategy = 'fastest' }, 'upstreams.users.strategy',
      'must be one of round_robin, weighted_round_robin, least_connections, response_time, consistent_hash, random', '"fastest"'],
    ['bad URL', c => { c.upstreams.users.targets[1].url = 'ftp://127.0.0.1:3002' }, 'upstreams.users.targets[1].url', 'http', 'ftp://'],
    ['URL that is not one', c => { c.upstreams.users.targets[0].url = 'not a url' }, 'upstreams.users.targets[0].url', 'http'],
    ['URL with a path that would be dropped', c => { c.upstreams.users.targets[0].url = 'http://h:1/api' }, 'upstreams.users.targets[0].url', 'without path'],
    ['route to a missing upstream', c => { c.routes[0].upstream = 'x' }, 'routes[0].upstream', 'unknown upstream "x"', 'known: users'],
    ['negative weight', c => { c.upstreams.users.targets[0].weight = -1 }, 'upstreams.users.targets[0].weight', '>= 0', '-1'],
    ['unknown key', c => { c.upstreams.users.strtegy = 'random' }, 'upstreams.users.strtegy', 'unknown key "strtegy"', 'did you mean "strategy"'],
    ['unknown top-level key', c => { c.upstream = {} }, 'upstream', 'unknown key "upstream"'],
    ['bad duration', c => { c.upstreams.users.healthCheck = { active: { interval: '1x' } } }, 'upstreams.users.healthCheck.active.interval', 'duration', '"1x"'],
    ['negative duration', c => { c.drain = { timeout: -5 } }, 'drain.timeout', 'duration', '-5'],
    ['duration beyond a Node timer', c => { c.drain = { timeout: '1000h' } }, 'drain.timeout', '1000h', '2147483647'],
    ['fallback to a missing upstream', c => { c.upstreams.users.failover = { fallback: 'nope' } }, 'upstreams.users.failover.fallback', 'unknown upstream "nope"'],
    ['fallback to itself', c => { c.upstreams.users.failover = { fallback: 'users' } }, 'upstreams.users.failover.fallback', 'another upstream'],
    ['duplicate target id', c => { c.upstreams.users.targets[1].id = 'u1' }, 'upstreams.users.targets[1].id', 'duplicate target id "u1"'],
    ['no targets and no discovery', c => { c.upstreams.users.targets = [] }, 'upstreams.users.targets', 'at least one target'],
    ['route without upstream or split', c => { delete c.routes[0].upstream }, 'routes[0].upstream', 'needs upstream or split'],
    ['route path without /', c => { c.routes[0].path = 'users' }, 'routes[0].path', 'starting with /'],
    ['lower-case method', c => { c.routes[0].methods = ['get'] }, 'routes[0].methods[0]', 'GET, HEAD, POST'],
    ['rate-limit algorithm', c => { c.routes[0].rateLimit = { algorithm: 'leaky', limit: 1, window: '1s' } }, 'routes[0].rateLimit.algorithm', 'fixed_window, sliding_window, token_bucket'],
    ['limit in an array', c => { c.routes[0].rateLimit = [{ algorithm: 'fixed_window', limit: 5, window: '1s' }, { algorithm: 'token_bucket', limit: 0, window: '1h' }] },
      'routes[0].rateLimit[1].limit', '>= 1'],
    ['cost above limit', c => { c.routes[0].rateLimit = { algorithm: 'fixed_window', limit: 2, window: '1s', cost: 3 } }, 'routes[0].rateLimit.cost', 'more than limit'],
    ['hashOn without consistent_hash', c => { c.routes[0].hashOn = 'ip' }, 'routes[0].hashOn', 'consistent_hash'],
    ['bad hashOn', c => { c.upstreams.users.strategy = 'consistent_hash'; c.upstreams.users.hashOn = 'query:x' }, 'upstreams.users.hashOn', 'header:<name>'],
    ['tcp probe with a path', c => { c.upstreams.users.healthCheck = { active: { type: 'tcp', path: '/h' } } }, 'upstreams.users.healthCheck.active.path', 'only used by type http'],
    ['probe timeout above interval', c => { c.upstreams.users.healthCheck = { active: { interval: '1s', timeout: '2s' } } }, 'upstreams.users.healthCheck.active.timeout', 'longer than interval'],
    ['bad redis', c => { c.cluster = { redis: 'http://127.0.0.1:6379' } }, 'cluster.redis', 'redis://'],
    ['retryOn item', c => { c.upstreams.users.failover = { retryOn: ['timeout', 'sometimes'] } }, 'upstreams.users.failover.retryOn[1]', 'connect_failure', '"sometimes"'],
    ['route shadowing /health', c => { c.routes.push({ path: '/health', upstream: 'users' }) }, 'routes[1].path', '/health'],
    ['duplicate route', c => { c.routes.push({ path: '/users/', upstream: 'users' }) }, 'routes[1].path', 'duplicates routes[0]'],
    ['wrong type', c => { c.node = { port: 'eighty' } }, 'node.port', 'integer', '"eighty"'],
    ['bad upstream name', c => { c.upstreams['my users'] = c.upstreams.users }, 'upstreams["my users"]', 'invalid name'],
    ['alert evaluation every 0 ms', c => { c.alerts = { interval: 0 } }, 'alerts.interval', 'longer than 0'],
    ['alert webhook timeout 0', c => { c.alerts = { alerters: [{ type: 'webhook', url: 'http://127.0.0.1:9/hook', timeout: '0s' }] } }, 'alerts.alerters[0].timeout', 'longer than 0'],
  ]
  for (const [name, breakIt, path, ...fragments] of cases) {
    const c = base()
    breakIt(c)
    const issues = issuesOf(() => validateConfig(c))
    expectIssue(t, issues, path, ...fragments)
    t.equal(issues.length, 1, `${name}: one issue, not ajv's branch-by-branch noise`, { issues })
  }
})

t.test('a missing environment variable names the path and the variable', async (t) => {
  const issues = issuesOf(() => parseConfigText(DESIGN_YAML, {}, 'design.yaml'))
  expectIssue(t, issues, 'admin.token', 'GATEWAY_ADMIN_TOKEN')
  const nested = issuesOf(() => parseConfigText('upstreams:\n  a:\n    targets:\n      - { id: a, url: "${A_URL}" }\n', {}))
  expectIssue(t, nested, 'upstreams.a.targets[0].url', 'A_URL', 'not set')
})

t.test('environment: defaults, escapes, typed values, CLI overrides', async (t) => {
  const yaml = 'node: { id: ${ID:-gw-9}, port: ${PORT} }\nadmin: { token: $${LITERAL_ADMIN_TOKEN} }\nupstreams:\n  a: { targets: [{ id: a, url: "http://${HOST:-127.0.0.1}:3001" }] }\n'
  const c = parseConfigText(yaml, { PORT: '9001', HOST: '' })
  t.equal(c.node.id, 'gw-9', '${VAR:-default}')
  t.equal(c.node.port, 9001, 'a whole-value reference takes the type the schema wants')
  t.equal(c.admin.token, '${LITERAL_ADMIN_TOKEN}', '$${ escapes')
  t.equal(c.upstreams.a.targets[0].url, 'http://127.0.0.1:3001', 'an empty variable takes the default, as in sh')
  const o = parseConfigText(yaml, { PORT: '9001', GATEWAY_PORT: '9100', GATEWAY_NODE_ID: 'gw-x', REDIS_URL: 'redis://10.0.0.1:6379' })
  t.equal(o.node.port, 9100)
  t.equal(o.node.id, 'gw-x')
  t.equal(o.cluster.redis, 'redis://10.0.0.1:6379')
  expectIssue(t, issuesOf(() => parseConfigText(yaml, { PORT: '1', GATEWAY_PORT: 'x' })), 'node.port', 'GATEWAY_PORT')
})

t.test('a quoted number or boolean in the file reads as the ${VAR:-default} form does', async (t) => {
  const quoted = 'node: { id: "4180", port: "4180" }\nadmin: { token: "1234567890123456" }\nupstreams:\n  a: { targets: [{ id: "7", url: http://127.0.0.1:3001, weight: "3" }], healthCheck: { active: { path: /h, interval: "1000" } } }\n'
  const viaEnv = 'node: { id: "4180", port: "${P:-4180}" }\nadmin: { token: "1234567890123456" }\nupstreams:\n  a: { targets: [{ id: "7", url: http://127.0.0.1:3001, weight: "${W:-3}" }], healthCheck: { active: { path: /h, interval: "${I:-1000}" } } }\n'
  const a = parseConfigText(quoted, {})
  const b = parseConfigText(viaEnv, {})
  t.equal(a.node.port, 4180, 'node.port: "4180" is the number 4180')
  t.equal(a.upstreams.a.targets[0].weight, 3)
  t.equal(a.node.id, '4180', 'a string field keeps its string')
  t.equal(a.admin.token, '1234567890123456')
  t.equal(a.upstreams.a.targets[0].id, '7')
  t.same(a, b, 'the literal and the env form give the same config')
  expectIssue(t, issuesOf(() => parseConfigText('node: { port: "41 80" }\n', {})), 'node.port', 'integer')
  expectIssue(t, issuesOf(() => parseConfigText('node: { port: "0x10" }\n', {})), 'node.port', 'integer')
})

t.test('YAML syntax errors give file, line and column', async (t) => {
  const issues = issuesOf(() => parseConfigText('node:\n  port: 1\nroutes: [ { path: /a\n', {}, 'gw.yaml'))
  t.ok(issues.length > 0)
  t.match(issues[0].message, /^gw\.yaml:\d+:\d+: YAML syntax error/)
  const dup = issuesOf(() => parseConfigText('node: {}\nnode: {}\n', {}, 'gw.yaml'))
  t.match(dup[0].message, 'gw.yaml:2:1')
  const dir = mkdtempSync(join(tmpdir(), 'fhg-config-'))
  t.match(issuesOf(() => loadConfigFile(join(dir, 'missing.yaml')))[0].message, 'ENOENT')
  writeFileSync(join(dir, 'gw.yaml'), DESIGN_YAML)
  t.equal(loadConfigFile(join(dir, 'gw.yaml'), ENV).upstreams.users.targets.length, 2)
})

t.test('ConfigError carries the code, status and every issue', async (t) => {
  const c = base()
  c.upstreams.users.strategy = 'x'
  c.routes[0].upstream = 'nope'
  c.extra = 1
  try {
    validateConfig(c)
    t.fail('should throw')
  } catch (err) {
    t.ok(err instanceof ConfigError)
    const e = err as ConfigError
    t.equal(e.code, 'FHG_ERR_INVALID_CONFIG')
    t.equal(e.statusCode, 400)
    t.same(e.issues.map(i => i.path).sort(), ['extra', 'upstreams.users.strategy'], 'schema issues first; cross-checks wait for a valid shape')
    t.match(e.message, 'upstreams.users.strategy: must be one of')
    t.same((e.toJSON() as { issues: unknown }).issues, e.issues)
  }
})

t.test('normalization: defaults, derived values, no mutation', async (t) => {
  const input = base()
  input.upstreams.users.strategy = 'consistent_hash'
  input.upstreams.users.healthCheck = { active: { interval: '500ms' } }
  input.upstreams.users.timeouts = { connect: '1s' }
  input.proxy = { timeouts: { body: '1m' } }
  input.rateLimit = { default: { algorithm: 'token_bucket', limit: 10, window: '1s', key: 'header:X-Api-Key' } }
  input.routes.push({ path: '/free/', upstream: 'users', rateLimit: [], strategy: 'random', failover: { maxRetries: 0, retryOn: ['5xx'] } })
  const before = JSON.stringify(input)
  const c = validateConfig(input)
  t.equal(JSON.stringify(input), before, 'the input is not mutated')
  const u = c.upstreams.users
  t.equal(u.hashOn, 'ip', 'consistent_hash without hashOn hashes on ip')
  t.equal(c.routes[0].strategy, 'consistent_hash', 'a route inherits its upstream\'s strategy')
  t.equal(c.routes[0].hashOn, 'ip')
  t.equal(u.healthCheck.active?.timeout, 500, 'the default probe timeout is capped at interval')
  t.equal(u.healthCheck.active?.jitter, 50, 'jitter defaults to a tenth of interval')
  t.same(u.healthCheck.active?.expectedStatuses, [[200, 399]])
  t.same(u.timeouts, { connect: 1000, headers: DEFAULTS.timeouts.headers, body: 60_000 })
  t.same(c.routes[0].rateLimit.map(r => r.key), ['header:x-api-key'], 'routes without limits take rateLimit.default; header names lower-cased')
  t.same(c.routes[1].rateLimit, [], '[] opts out')
  t.equal(c.routes[1].path, '/free', 'trailing slash dropped')
  t.equal(c.routes[1].failover.maxRetries, 0)
  t.same(c.routes[1].failover.retryOn, { connectFailure: false, reset: false, timeout: false, statuses: [[500, 599]] })
  t.equal(c.routes[1].failover.budgetPercent, DEFAULTS.failover.budgetPercent)
  t.same(u.failover.retryOn, { connectFailure: true, reset: true, timeout: true, statuses: [[502, 504]] })
  t.ok(statusIn(u.failover.retryOn.statuses, 503))
  t.notOk(statusIn(u.failover.retryOn.statuses, 500))
  t.equal(c.node.port, DEFAULTS.node.port)
  t.match(c.node.id, /-\d+$/, 'node id defaults to hostname-pid')
  t.equal(c.cluster.name, DEFAULTS.cluster.name)
  t.equal(c.cluster.redis, undefined)
  t.equal(u.circuitBreaker, undefined, 'circuit breaker is off unless configured')
  t.same(validateConfig({}).upstreams, {}, 'an empty config is valid')
  t.same(issuesOf(() => validateConfig([1])), [{ path: '', message: 'the config must be an object, got an array' }])
})

t.test('a route failover override keeps the upstream values it does not set', async (t) => {
  const c = base()
  c.upstreams.users.failover = { maxRetries: 5, retryNonIdempotent: true }
  c.routes[0].failover = { retryDelay: '100ms', hedge: { delay: '50ms' } }
  const r = validateConfig(c).routes[0].failover
  t.equal(r.maxRetries, 5)
  t.equal(r.retryNonIdempotent, true)
  t.equal(r.retryDelay, 100)
  t.same(r.hedge, { delay: 50 })
  t.equal(describeOptions().find(o => o.path === 'routes[].failover.maxRetries')?.default, undefined, 'overrides have no defaults')
})

t.test('a discovery upstream needs no static targets', async (t) => {
  const c = validateConfig({ upstreams: { svc: { discovery: { service: 'users' } } } })
  t.same(c.upstreams.svc.targets, [])
})

t.test('parseDuration', async (t) => {
  const good: Array<[number | string, number]> = [[0, 0], [250, 250], ['250', 250], ['500ms', 500], ['1s', 1000],
    ['1.5s', 1500], ['1.1s', 1100], ['5m', 300_000], ['1h', 3_600_000], [0.5, 0.5]]
  for (const [v, ms] of good) t.equal(parseDuration(v), ms, `${String(v)} = ${ms} ms`)
  for (const bad of [-1, '', '1x', '-1s', '1.5', ' 1s', '1 s', 's', NaN, Infinity, '1000h']) {
    t.throws(() => parseDuration(bad), RangeError, `${typeof bad === "string" ? JSON.stringify(bad) : String(bad)} is rejected`)
  }
})

t.test('describeOptions covers the schema, with descriptions and DEFAULTS', async (t) => {
  const rows = describeOptions()
  const by = new Map(rows.map(r => [r.path, r]))
  t.same(rows.filter(r => r.description === ''), [], 'every option has a description')
  t.equal(by.get('upstreams.<name>.strategy')?.default, 'round_robin')
  t.equal(by.get('upstreams.<name>.targets[].weight')?.default, 1)
  t.equal(by.get('upstreams.<name>.targets[].url')?.type, 'string')
  t.equal(by.get('upstreams.<name>.healthCheck.active.interval')?.type, 'duration')
  t.equal(by.get('upstreams.<name>.healthCheck.active.interval')?.default, DEFAULTS.activeHealthCheck.interval)
  t.equal(by.get('routes[].rateLimit.algorithm')?.type, 'fixed_window | sliding_window | token_bucket')
  t.equal(by.get('rateLimit.onStoreError')?.default, 'fail_open')
  t.equal(by.get('admin.prefix')?.default, '/gateway')
  t.equal(by.get('metrics.path')?.default, '/metrics')
  t.ok(by.has('cluster.redis.sentinels[].host'), 'union branches are walked')
  t.ok(by.has('routes[].failover.hedge.delay'))
  t.equal(new Set(rows.map(r => r.path)).size, rows.length, 'paths are unique')
})
