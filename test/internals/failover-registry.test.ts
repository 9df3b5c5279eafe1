// lib/proxy/failover-registry.ts: reconcile (config sync) swaps an upstream's failover state only where its
// options changed, and route failovers handed out earlier follow the new options.
import t from 'tap'
import { FailoverRegistry } from '../../lib/proxy/failover-registry.js'
import { UpstreamRegistry } from '../../lib/upstream/registry.js'

function setup (): { upstreams: UpstreamRegistry, reg: FailoverRegistry } {
  const upstreams = new UpstreamRegistry()
  upstreams.upsert('a', { targets: [{ id: 'a1', url: 'http://127.0.0.1:1' }] })
  upstreams.upsert('b', { targets: [{ id: 'b1', url: 'http://127.0.0.1:2' }] })
  const reg = new FailoverRegistry({ a: { maxRetries: 1 } }, { a: { consecutiveFailures: 2, openDuration: 30_000 } })
  return { upstreams, reg }
}

t.test('unchanged options keep the upstream\'s state; changed retry options keep its breakers', async (t) => {
  const { upstreams, reg } = setup()
  const a = upstreams.get('a')!
  const b = upstreams.get('b')!
  const fa = reg.get(a)
  const fb = reg.get(b)
  t.ok(fa.breakers, 'a has breakers')
  reg.reconcile({ a: { maxRetries: 1 } }, { a: { consecutiveFailures: 2, openDuration: 30_000 } })
  t.equal(reg.get(a), fa, 'same options: same state (budget, breakers, policy)')
  t.equal(reg.get(b), fb)

  reg.reconcile({ a: { maxRetries: 3 } }, { a: { consecutiveFailures: 2, openDuration: 30_000 } })
  const fa2 = reg.get(a)
  t.not(fa2, fa, 'new retry options: new state')
  t.equal(fa2.policy.maxRetries, 3)
  t.equal(fa2.breakers, fa.breakers, 'the breakers (and their circuits) are kept')
  t.equal(reg.get(b), fb, 'another upstream is untouched')
})

t.test('changed circuitBreaker options: new breakers, the old ones disposed; removing them removes them', async (t) => {
  const { upstreams, reg } = setup()
  const a = upstreams.get('a')!
  const fa = reg.get(a)
  const old = fa.breakers!
  // open the circuit of a1
  const target = a.pool.targets[0]
  for (let i = 0; i < 2; i++) old.record(target, old.acquire(target), 'failure')
  t.equal(target.circuit, 'open')
  reg.reconcile({ a: { maxRetries: 1 } }, { a: { consecutiveFailures: 5, openDuration: 30_000 } })
  const fa2 = reg.get(a)
  t.not(fa2.breakers, old)
  t.equal(target.circuit, 'closed', 'new breaker options start closed')
  t.equal(fa2.breakerOptions?.consecutiveFailures, 5)
  old.record(target, 0, 'failure') // a try in flight on the old breakers ends: no effect, no throw
  reg.reconcile({ a: { maxRetries: 1 } }, {})
  t.equal(reg.get(a).breakers, undefined, 'no circuitBreaker: none')
})

t.test('route failovers follow the upstream\'s new options; a route\'s own keys stay on top', async (t) => {
  const { upstreams, reg } = setup()
  reg.get(upstreams.get('a')!)
  const inherits = reg.forRoute('a', undefined, undefined)
  const own = reg.forRoute('a', { maxRetries: 0 }, { status: 503 })
  t.equal(inherits.policy.maxRetries, 1)
  t.equal(inherits.fallback, undefined)
  t.equal(own.policy.maxRetries, 0)
  const p = inherits.policy
  t.equal(inherits.policy, p, 'no change: the same policy object on every read')

  reg.reconcile({ a: { maxRetries: 4, fallback: 'b', hedge: { delay: 50 } } }, {})
  t.equal(inherits.policy.maxRetries, 4, 'the inherited policy moved')
  t.equal(inherits.policy, reg.get(upstreams.get('a')!).policy, 'and is the upstream\'s own')
  t.equal(inherits.fallback, 'b')
  t.equal(inherits.hedgeDelay, 50)
  t.equal(own.policy.maxRetries, 0, 'the route\'s own key wins')
  t.equal(own.fallback, 'b', 'keys it does not set come from the upstream')
  t.same(own.fallbackResponse, { status: 503 })
})
