// lib/routes/plans.ts: the one per-route plan cache of the rate limiter, the load balancer and the response cache.
import t from 'tap'
import { RoutePlans } from '../../lib/routes/plans.js'

t.test('a plan is made once per route config object, with the argument of its first request; null plans are kept too', async (t) => {
  const made: Array<[object, string]> = []
  const plans = new RoutePlans<{ url: string } | null, string>((config, url) => {
    made.push([config, url])
    return (config as { cached?: boolean }).cached === true ? { url } : null
  })
  const a = { cached: true }
  const b = { cached: false }
  t.same(plans.of(a, '/a'), { url: '/a' })
  t.equal(plans.of(a, '/other'), plans.of(a, '/a'), 'the same plan: made once')
  t.equal(plans.of(b, '/b'), null)
  t.equal(plans.of(b, '/b'), null)
  t.equal(made.length, 2, 'one make per object, a null plan included')
  t.not(plans.of({ cached: true }, '/a'), plans.of(a, '/a'), 'a new object (a changed route) gets a new plan')
})

t.test('a make that throws (a bad route) keeps nothing: the next request asks again', async (t) => {
  let calls = 0
  const plans = new RoutePlans<number>(() => { if (++calls === 1) throw new Error('bad route'); return calls })
  const c = {}
  t.throws(() => plans.of(c, undefined), /bad route/)
  t.equal(plans.of(c, undefined), 2)
  t.equal(plans.of(c, undefined), 2)
})
