// The pure parts of the rate-limit plugin: rule compilation, keys, allow list, client IP, headers, outage guard.
import t from 'tap'
import { advertise, limitHeaders, mostRestrictive, policyHeader, rateLimitHeader } from '../lib/ratelimit/headers.js'
import { cachedKeys, clientPart, compileAllowList, compileClientIp, compileRoutePolicy, costOf, storeKey, type RequestLike } from '../lib/ratelimit/policy.js'
import { FAIL_CLOSED, FAIL_OPEN, StoreGuard } from '../lib/ratelimit/outage.js'
import type { Decision, LimitRule, RateLimitStore } from '../lib/ratelimit/types.js'

function req (remoteAddress: string, headers: Record<string, string> = {}): RequestLike {
  return { headers, raw: { headers, socket: { remoteAddress } } }
}
const dec = (allowed: boolean, limit: number, remaining: number, resetMs: number, retryAfterMs = 0): Decision =>
  ({ allowed, limit, remaining, resetMs, retryAfterMs })

t.test('compiles rules: defaults, durations, several limits, and says what is wrong', async (t) => {
  const p = compileRoutePolicy([
    { algorithm: 'sliding_window', limit: 10, window: '1s' },
    { algorithm: 'fixed_window', limit: 1000, window: 3_600_000, key: 'header:X-Api-Key', cost: 2, mode: 'lease' },
    { algorithm: 'token_bucket', limit: 5, window: 1000, shadow: true },
  ], '/users')!
  t.equal(p.rules.length, 3)
  t.same(p.rules[0].rule, { algorithm: 'sliding_window', limit: 10, window: 1000 })
  t.equal(p.rules[0].kind, 'ip')
  t.equal(p.rules[0].mode, 'exact')
  t.equal(p.rules[1].kind, 'header')
  t.equal(p.rules[1].header, 'x-api-key')
  t.equal(p.rules[1].cost, 2)
  t.equal(p.rules[1].mode, 'lease')
  t.equal(p.enforced.length, 2, 'the shadow rule is not enforced')
  t.equal(p.policyHeader, '"10-per-1s";q=10;w=1, "1000-per-1h";q=1000;w=3600')
  t.ok(p.needsIp)
  t.equal(compileRoutePolicy(undefined, '/x'), undefined)
  t.equal(compileRoutePolicy([], '/x'), undefined)
  t.equal(compileRoutePolicy(false, '/x'), undefined)
  t.notOk(compileRoutePolicy({ algorithm: 'fixed_window', limit: 1, window: 1000, key: 'route' }, '/x')!.needsIp)
  t.throws(() => compileRoutePolicy({ algorithm: 'leaky' as never, limit: 1, window: 1 }, '/x'), /rateLimit\.algorithm: must be one of/)
  t.throws(() => compileRoutePolicy([{ algorithm: 'fixed_window', limit: 0, window: 1 }], '/x'), /rateLimit\[0\]\.limit/)
  t.throws(() => compileRoutePolicy({ algorithm: 'fixed_window', limit: 1, window: 'soon' }, '/x'), /rateLimit\.window: invalid duration/)
  t.throws(() => compileRoutePolicy({ algorithm: 'fixed_window', limit: 1, window: 1, key: 'cookie:a' }, '/x'), /rateLimit\.key/)
  t.throws(() => compileRoutePolicy({ algorithm: 'fixed_window', limit: 1, window: 1, cost: 2 }, '/x'), /no request could pass/)
})

t.test('keys: ip, route, header (falls back to the ip), function; budgets of rules and routes stay apart', async (t) => {
  const p = compileRoutePolicy([
    { algorithm: 'fixed_window', limit: 1, window: 1000 },
    { algorithm: 'fixed_window', limit: 1, window: 1000, key: 'route' },
    { algorithm: 'fixed_window', limit: 1, window: 1000, key: 'header:x-user' },
    { algorithm: 'fixed_window', limit: 1, window: 1000, key: (r: RequestLike) => r.headers['x-tenant'] as string | undefined, cost: (r: RequestLike) => Number(r.headers['x-cost'] ?? 1) },
  ], '/a', 'rateLimit', 'gw:rl:')!
  const [ip, route, header, fn] = p.rules
  const r = req('10.0.0.1', { 'x-user': 'alice', 'x-tenant': 't1', 'x-cost': '3' })
  t.equal(clientPart(ip, r, '10.0.0.1'), '10.0.0.1')
  t.equal(clientPart(route, r, '10.0.0.1'), '')
  t.equal(clientPart(header, r, '10.0.0.1'), 'h:alice')
  t.equal(clientPart(header, req('10.0.0.1'), '10.0.0.1'), 'ip:10.0.0.1', 'no header: the client IP, not one shared budget')
  t.equal(clientPart(fn, r, '10.0.0.1'), 'f:t1')
  t.equal(costOf(fn, r), 3)
  t.equal(costOf(ip, r), 1)
  const k = storeKey(ip, r, '10.0.0.1')
  t.match(k, /^gw:rl:\/a:0:\{[A-Za-z0-9_-]{16}\}$/, 'route, rule index, hashed client in one hash tag')
  t.notOk(k.includes('10.0.0.1'), 'no client string in the key')
  t.equal(k, storeKey(ip, r, '10.0.0.1'), 'stable')
  t.not(k, storeKey(ip, r, '10.0.0.2'))
  t.equal(storeKey(route, r, '10.0.0.1'), storeKey(route, req('10.9.9.9'), '10.9.9.9'), 'key route: one budget for every client')
  const other = compileRoutePolicy({ algorithm: 'fixed_window', limit: 1, window: 1000 }, '/b', 'rateLimit', 'gw:rl:')!.rules[0]
  t.not(k, storeKey(other, r, '10.0.0.1'), 'another route, another budget')
  t.not(storeKey(header, r, '10.0.0.1'), storeKey(header, req('10.0.0.1', { 'x-user': 'bob' }), '10.0.0.1'))
})

t.test('key cache: a remembered client costs no hash; the cache starts over when full', async (t) => {
  let built = 0
  const keyOf = cachedKeys((c) => { built++; return 'k:' + c }, 3)
  t.equal(keyOf('a'), 'k:a')
  t.equal(keyOf('a'), 'k:a')
  t.equal(built, 1)
  keyOf('b'); keyOf('c'); keyOf('d')
  t.equal(built, 4)
  t.equal(keyOf('d'), 'k:d')
  t.equal(keyOf('a'), 'k:a')
  t.equal(built, 5, 'a was dropped when the cache started over')
})

t.test('client IP: the socket unless trustProxy; a forged X-Forwarded-For changes nothing by default', async (t) => {
  const forged = req('127.0.0.1', { 'x-forwarded-for': '6.6.6.6' })
  t.equal(compileClientIp(undefined)(forged), '127.0.0.1')
  t.equal(compileClientIp(false)(forged), '127.0.0.1')
  t.equal(compileClientIp(true)(forged), '6.6.6.6')
  t.equal(compileClientIp('127.0.0.1')(forged), '6.6.6.6')
  t.equal(compileClientIp('10.0.0.0/8, 192.168.0.1')(forged), '127.0.0.1', 'the peer is not a trusted proxy')
  t.equal(compileClientIp(['loopback'])(req('127.0.0.1', { 'x-forwarded-for': '1.1.1.1, 6.6.6.6' })), '6.6.6.6', 'the nearest untrusted hop')
  t.equal(compileClientIp(1)(req('127.0.0.1', { 'x-forwarded-for': '1.1.1.1, 6.6.6.6' })), '6.6.6.6', 'one hop trusted')
  t.equal(compileClientIp(2)(req('127.0.0.1', { 'x-forwarded-for': '1.1.1.1, 6.6.6.6' })), '1.1.1.1')
  t.equal(compileClientIp(false)(req('::ffff:10.1.2.3')), '10.1.2.3', 'IPv4-mapped IPv6 as IPv4')
})

t.test('allow list: addresses and CIDR ranges, v4 and v6', async (t) => {
  t.equal(compileAllowList([]), undefined)
  const allow = compileAllowList(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::1'])!
  t.ok(allow('10.200.3.4'))
  t.ok(allow('192.168.1.7'))
  t.notOk(allow('192.168.1.8'))
  t.ok(allow('2001:db8:1::5'))
  t.ok(allow('::1'))
  t.notOk(allow('2001:db9::1'))
  t.notOk(allow(''))
  t.throws(() => compileAllowList(['10.0.0.0/33']), /bad prefix length/)
  t.throws(() => compileAllowList(['not-an-ip']), /not an IP address/)
})

t.test('headers: draft fields, legacy trio, the most restrictive limit', async (t) => {
  const pol = advertise([{ algorithm: 'fixed_window', limit: 10, window: 1000 }, { algorithm: 'fixed_window', limit: 10, window: 1000 }, { algorithm: 'token_bucket', limit: 1000, window: 3_600_000 }])
  t.same(pol.map((p) => p.name), ['10-per-1s', '10-per-1s-2', '1000-per-1h'])
  t.equal(policyHeader([pol[0]]), '"10-per-1s";q=10;w=1')
  t.equal(rateLimitHeader(pol[0], dec(true, 10, 3, 400)), '"10-per-1s";r=3;t=1')
  t.equal(mostRestrictive([dec(true, 10, 3, 400), dec(true, 1000, 900, 3_000_000)]), 0)
  t.equal(mostRestrictive([dec(true, 10, 9, 400), dec(true, 1000, 5, 3_000_000)]), 1, 'fewest units left')
  t.equal(mostRestrictive([dec(true, 10, 0, 400), dec(false, 1000, 0, 3_000_000, 2000)]), 1, 'a refusal first')
  t.equal(mostRestrictive([dec(false, 10, 0, 400, 400), dec(false, 1000, 0, 3_000_000, 2000)]), 1, 'the longest wait')
  t.equal(mostRestrictive([undefined, undefined]), -1)
  const d = dec(true, 10, 3, 1500)
  t.same(limitHeaders('draft', 'P', pol[0], d), [['ratelimit-policy', 'P'], ['ratelimit', '"10-per-1s";r=3;t=2']])
  t.same(limitHeaders('legacy', 'P', pol[0], d), [['x-ratelimit-limit', '10'], ['x-ratelimit-remaining', '3'], ['x-ratelimit-reset', '2']])
  t.equal(limitHeaders('both', 'P', pol[0], d).length, 5)
  t.same(limitHeaders('none', 'P', pol[0], d), [])
})

/** A store that fails while `down` is set. */
class FlakyStore implements RateLimitStore {
  down = false
  calls = 0
  async consume (_key: string, rule: LimitRule, _cost: number): Promise<Decision> {
    this.calls++
    if (this.down) throw new Error('store down')
    return dec(true, rule.limit, rule.limit - 1, rule.window)
  }
}
class CountingStore implements RateLimitStore {
  used = new Map<string, number>()
  async consume (key: string, rule: LimitRule, cost: number): Promise<Decision> {
    const u = this.used.get(key) ?? 0
    if (u + cost > rule.limit) return dec(false, rule.limit, 0, rule.window, rule.window)
    this.used.set(key, u + cost)
    return dec(true, rule.limit, rule.limit - u - cost, rule.window)
  }
}
const rule: LimitRule = { algorithm: 'fixed_window', limit: 10, window: 1000 }

t.test('outage guard: policies, short circuit, probing, recovery, metric hooks and rate-limited logs', async (t) => {
  let now = 1000
  const logs: string[] = []
  const degraded: boolean[] = []
  let errors = 0
  const store = new FlakyStore()
  const g = new StoreGuard({
    policy: 'fail_open',
    now: () => now,
    log: { warn: (_o, m) => logs.push('warn ' + m), info: (_o, m) => logs.push('info ' + m) },
    onDegraded: (b) => degraded.push(b),
    onError: () => errors++,
  })
  t.equal((await g.consume(store, 'k', rule, 1)).source, undefined, 'a store decision')
  store.down = true
  for (let i = 0; i < 3; i++) t.equal(await g.consume(store, 'k', rule, 1), FAIL_OPEN)
  t.equal(store.calls, 4)
  t.ok(g.degraded)
  await g.consume(store, 'k', rule, 1)
  t.equal(store.calls, 4, 'skipped after 3 failures in a row')
  now += 200
  await g.consume(store, 'k', rule, 1)
  t.equal(store.calls, 5, 'one probe per interval')
  await g.consume(store, 'k', rule, 1)
  t.equal(store.calls, 5)
  now += 10_000
  store.down = false
  t.equal((await g.consume(store, 'k', rule, 1)).source, undefined, 'probe succeeds: back to the store')
  t.notOk(g.degraded)
  t.same(degraded, [true, false])
  t.equal(errors, 4)
  t.same(logs, ['warn rate-limit store failing: applying onStoreError policy', 'info rate-limit store recovered'], 'one line per state, not per request')

  const closed = new StoreGuard({ policy: 'fail_closed' })
  store.down = true
  t.equal(await closed.consume(store, 'k', rule, 1), FAIL_CLOSED)
  t.throws(() => new StoreGuard({ policy: 'local' }), /in-memory store/)
})

t.test('outage guard local: the in-memory limiter at limit ÷ live nodes', async (t) => {
  const store = new FlakyStore()
  store.down = true
  let nodes = 3
  const g = new StoreGuard({ policy: 'local', localStore: new CountingStore(), liveNodes: () => nodes })
  t.same(g.localRule(rule), { algorithm: 'fixed_window', limit: 3, window: 1000 })
  let allowed = 0
  for (let i = 0; i < 10; i++) {
    const o = await g.consume(store, 'k', rule, 1)
    t.equal(o.source, 'local')
    if (o.allowed) allowed++
  }
  t.equal(allowed, 3, '10 / 3 nodes = 3')
  nodes = 100
  t.equal(g.localRule(rule).limit, 1, 'never below one unit')
  nodes = 0
  t.equal(g.localRule(rule), rule, 'no cluster: one node')
})

t.test('outage guard local: the local limiter is told when the store degrades (clear) and when it recovers', async (t) => {
  let now = 0
  const store = new FlakyStore()
  const told: string[] = []
  const local = Object.assign(new CountingStore(), { clear () { told.push('clear') }, recovered () { told.push('recovered') } })
  const g = new StoreGuard({ policy: 'local', localStore: local, now: () => now, probeInterval: 10 })
  await g.consume(store, 'k', rule, 1)
  store.down = true
  for (let i = 0; i < 5; i++) await g.consume(store, 'k', rule, 1)
  t.same(told, ['clear'], 'once, when the store degrades')
  store.down = false
  now += 100
  await g.consume(store, 'k', rule, 1)
  t.same(told, ['clear', 'recovered'], 'once, when it answers again')
})
