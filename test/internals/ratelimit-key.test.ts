// Key names: hashed client keys (96 bits), a hash tag per client, braces in names escaped.
import t from 'tap'
import { hashKey, keyBuilder, rateLimitKey } from '../../lib/ratelimit/key.js'

t.test('hashKey: stable, 16 base64url chars, no collision among 200,000 keys', async (t) => {
  t.equal(hashKey('10.0.0.1'), hashKey('10.0.0.1'))
  t.match(hashKey('10.0.0.1'), /^[A-Za-z0-9_-]{16}$/)
  t.equal(hashKey(''), '2jmj7l5rSw0yVb_v', 'SHA-1 of "" truncated to 96 bits')
  const seen = new Set<string>()
  for (let i = 0; i < 200_000; i++) seen.add(hashKey(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`))
  t.equal(seen.size, 200_000)
})

t.test('rateLimitKey: prefix, route, rule index, then the hashed client key as the hash tag', async (t) => {
  const k = rateLimitKey('api-gateway-cluster:rl:', '/users', 1, '203.0.113.7')
  t.equal(k, `api-gateway-cluster:rl:/users:1:{${hashKey('203.0.113.7')}}`)
  t.notOk(k.includes('203.0.113.7'), 'no client string in the key')
})

t.test('braces and % in the prefix or route are escaped: the client hash stays the only hash tag', async (t) => {
  const k = rateLimitKey('{gw}:rl:', '/a/{id}%', 0, 'x')
  t.equal(k, `%7Bgw%7D:rl:/a/%7Bid%7D%25:0:{${hashKey('x')}}`)
  t.equal(k.indexOf('{'), k.lastIndexOf('{'))
  t.not(rateLimitKey('p:', '/%7B', 0, 'x'), rateLimitKey('p:', '/{', 0, 'x'), 'escaping stays one-to-one')
})

t.test('keyBuilder gives the same keys as rateLimitKey, also with non-ASCII names', async (t) => {
  for (const [prefix, route, i] of [['gw:rl:', '/users', 0], ['grün:rl:', '/straße/{x}', 3]] as const) {
    const build = keyBuilder(prefix, route, i)
    for (const c of ['10.0.0.1', '', 'é', 'a'.repeat(1000)]) t.equal(build(c), rateLimitKey(prefix, route, i, c))
  }
})
