// The framework-free pieces of issue 11 points 6 and 8: the auth throttle, token rules, the audit diff, the cache key.
import t from 'tap'
import { AuthThrottle, clientKey } from '../../lib/auth-throttle.js'
import { tokenFingerprint, tokenProblem } from '../../lib/admin-auth.js'
import { diffSharedConfig } from '../../lib/cluster/config-diff.js'
import { cacheUrl } from '../../lib/cache/cache-key.js'
import { parseListen } from '../../lib/config/listen.js'

t.test('AuthThrottle: a few failures per window, then blocked until the window ends; memory bounded', async (t) => {
  const th = new AuthThrottle({ maxFailures: 3, window: 1000, maxClients: 100 })
  for (let i = 0; i < 3; i++) { t.equal(th.blockedFor('10.0.0.1', 0), 0); th.fail('10.0.0.1', 10 * i) }
  t.equal(th.blockedFor('10.0.0.1', 100), 900, 'blocked for the rest of the window')
  t.equal(th.blockedFor('10.0.0.2', 100), 0, 'another client is not')
  t.equal(th.blockedFor('10.0.0.1', 1000), 0, 'free again when the window ends')
  th.fail('10.0.0.1', 1000)
  t.equal(th.blockedFor('10.0.0.1', 1001), 0, 'a new window starts from zero')
  for (let i = 0; i < 100_000; i++) th.fail(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, 2000)
  t.equal(th.size, 100, 'a flood of addresses keeps at most maxClients')
})

t.test('clientKey: IPv4 as is, IPv6 by its /64', async (t) => {
  t.equal(clientKey('127.0.0.1'), '127.0.0.1')
  t.equal(clientKey('::ffff:10.1.2.3'), '::ffff:10.1.2.3')
  t.equal(clientKey('2001:db8:0:1::5'), '2001:db8:0:1::/64')
  t.equal(clientKey('2001:db8:0:1:ffff:1:2:3'), '2001:db8:0:1::/64', 'one /64, one client')
  t.equal(clientKey('2001:DB8::1'), '2001:db8:0:0::/64')
  t.equal(clientKey('::1'), '0:0:0:0::/64')
})

t.test('tokens: length and whitespace rules; the fingerprint is short and not the token', async (t) => {
  t.equal(tokenProblem('0123456789abcdef'), undefined)
  t.match(tokenProblem('0123456789abcde'), /15 characters/)
  t.match(tokenProblem('0123456789abcdef\n'), /whitespace/)
  const fp = tokenFingerprint('0123456789abcdef')
  t.match(fp, /^sha256:[0-9a-f]{12}$/)
  t.notOk(fp.includes('0123456789abcdef'))
})

t.test('diffSharedConfig: keys, upstreams and routes added, removed, changed', async (t) => {
  const a = { upstreams: { u: { targets: [1] }, v: { targets: [2] } }, routes: [{ path: '/a', upstream: 'u' }, { path: '/b', upstream: 'v', methods: ['GET'] }], rateLimit: {} }
  const b = { upstreams: { u: { targets: [1, 3] }, w: { targets: [4] } }, routes: [{ path: '/a', upstream: 'w' }, { path: '/c', upstream: 'u' }], rateLimit: {} }
  t.same(diffSharedConfig(a, b), {
    keys: ['routes', 'upstreams'],
    upstreams: { added: ['w'], removed: ['v'], changed: ['u'] },
    routes: { added: ['/c'], removed: ['GET /b'], changed: ['/a'] },
  })
  t.same(diffSharedConfig(a, 'not an object').keys, ['rateLimit', 'routes', 'upstreams'], 'a body that is not a document')
})

t.test('cacheUrl: all, ignore, or named parameters in the order received', async (t) => {
  t.equal(cacheUrl('/p?a=1&b=2', 'all'), '/p?a=1&b=2')
  t.equal(cacheUrl('/p?a=1&b=2', 'ignore'), '/p')
  t.equal(cacheUrl('/p', 'ignore'), '/p')
  t.equal(cacheUrl('/p?b=2&a=1&c=3', new Set(['a', 'c'])), '/p?a=1&c=3')
  t.equal(cacheUrl('/p?x=1', new Set(['a'])), '/p', 'none kept: the path alone')
  t.equal(cacheUrl('/p?l%61ng=fr&a', new Set(['lang', 'a'])), '/p?l%61ng=fr&a', 'encoded names and bare flags')
  t.equal(cacheUrl('/p?a=1&a=2', new Set(['a'])), '/p?a=1&a=2', 'repeated parameters all kept')
})

t.test('parseListen: host:port and [v6]:port', async (t) => {
  t.same(parseListen('127.0.0.1:9901', 'admin.listen'), { host: '127.0.0.1', port: 9901 })
  t.same(parseListen('[::1]:0', 'admin.listen'), { host: '::1', port: 0 })
  t.same(parseListen('localhost:80', 'x'), { host: 'localhost', port: 80 })
  t.throws(() => parseListen('9901', 'metrics.listen'), /metrics\.listen must be host:port/)
  t.throws(() => parseListen('h:70000', 'admin.listen'), /admin\.listen/)
})
