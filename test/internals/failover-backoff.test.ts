import t from 'tap'
import { Backoff, fullJitter, parseRetryAfter } from '../../lib/failover/backoff.js'

t.test('full jitter stays within [0, min(cap, base * 2^attempt))', async (t) => {
  const outside: string[] = []
  for (let attempt = 0; attempt < 12; attempt++) {
    const bound = Math.min(250, 25 * 2 ** attempt)
    for (let i = 0; i < 200; i++) {
      const d = fullJitter(attempt, 25, 250)
      if (!(d >= 0 && d < bound)) outside.push(`attempt ${attempt}: ${d} not in [0, ${bound})`)
    }
  }
  t.same(outside, [], '2400 samples within bounds')
  t.equal(fullJitter(3, 25, 250, () => 0.999999), 0.999999 * 200, 'random scales the exponential')
  t.equal(fullJitter(10, 25, 250, () => 0.5), 125, 'the cap bounds the exponential')
  t.equal(fullJitter(5000, 25, 250, () => 0.5), 125, 'a huge attempt does not overflow to NaN')
  t.equal(fullJitter(3, 0, 250), 0, 'base 0 means no delay')
})

t.test('jitter spreads delays over the whole range', async (t) => {
  const samples = Array.from({ length: 2000 }, () => fullJitter(2, 100, 1000))
  const low = samples.filter((d) => d < 100).length
  const high = samples.filter((d) => d >= 300).length
  // uniform over [0, 400): a quarter in each 100 ms band, generous bounds
  t.ok(low > 300 && low < 700, `lower quarter holds ${low} of 2000`)
  t.ok(high > 300 && high < 700, `upper quarter holds ${high} of 2000`)
  t.ok(new Set(samples).size > 1900, 'delays are not repeated')
})

t.test('connect failures retry at once by default', async (t) => {
  const b = new Backoff({ random: () => 0.99 })
  t.equal(b.delay(0, 'connect'), 0)
  t.equal(b.delay(3, 'connect'), 0)
  t.ok(b.delay(0, 503) > 0, 'a status waits a jittered delay')
  t.ok(b.delay(0, 'reset') < 25, 'first retry waits under retryDelay')
  const slow = new Backoff({ connectRetryDelay: 10, random: () => 0.5 })
  t.equal(slow.delay(1, 'connect'), 10, 'connectRetryDelay is a base like retryDelay')
})

t.test('Retry-After: seconds and HTTP dates', async (t) => {
  const now = Date.parse('2024-05-01T12:00:00Z')
  t.equal(parseRetryAfter('3', now), 3000)
  t.equal(parseRetryAfter(' 0 ', now), 0)
  t.equal(parseRetryAfter('Wed, 01 May 2024 12:00:10 GMT', now), 10_000)
  t.equal(parseRetryAfter('Wed, 01 May 2024 11:00:00 GMT', now), 0, 'a past date means now')
  t.equal(parseRetryAfter(['2', '9'], now), 2000, 'first of repeated headers')
  t.equal(parseRetryAfter(undefined, now), undefined)
  t.equal(parseRetryAfter('', now), undefined)
  t.equal(parseRetryAfter('soon', now), undefined)
  t.equal(parseRetryAfter('-5', now), undefined, 'negative seconds are invalid')
  t.equal(parseRetryAfter('1.5', now), undefined, 'delay-seconds is an integer')
})

t.test('Retry-After raises the delay and is capped by maxRetryAfter', async (t) => {
  const now = Date.parse('2024-05-01T12:00:00Z')
  const b = new Backoff({ retryDelay: 25, maxRetryAfter: 1000, random: () => 0.5 })
  const after = (v: string): number | undefined => parseRetryAfter(v, now)
  t.equal(b.delay(0, 503, after('0')), 12.5, 'a shorter Retry-After leaves the jittered delay')
  t.equal(b.delay(0, 503, after('1')), 1000)
  t.equal(b.delay(0, 503, after('120')), 1000, 'clamped to the cap')
  t.equal(b.delay(0, 503, after('Wed, 01 May 2024 12:00:00 GMT')), 12.5)
  t.equal(b.delay(0, 503, after('Wed, 01 May 2024 13:00:00 GMT')), 1000, 'a far date is clamped too')
  t.equal(b.delay(0, 503, after('garbage')), 12.5, 'an invalid header is ignored')
  const generous = new Backoff({ maxRetryAfter: 5000, random: () => 0 })
  t.equal(generous.delay(0, 429, after('3')), 3000)
})
