import t from 'tap'
import { once } from 'node:events'
import { UpstreamPool } from '../../lib/upstream/pool.js'
import type { Target } from '../../lib/upstream/target.js'
import { usable } from '../../lib/balancers/types.js'
import { RollingWindow } from '../../lib/failover/breaker-window.js'
import { CircuitBreaker, REFUSED, type CircuitBreakerOptions } from '../../lib/failover/breaker-circuit.js'
import { PoolBreakers, breakerOutcome } from '../../lib/failover/breaker-pool.js'
import type { CircuitEvent } from '../../lib/failover/events.js'

function setup (opts: CircuitBreakerOptions) {
  let now = 1_000_000
  const pool = new UpstreamPool('users', [
    { id: 'a', url: 'http://127.0.0.1:3001' },
    { id: 'b', url: 'http://127.0.0.1:3002' },
  ])
  const events: CircuitEvent[] = []
  const breakers = new PoolBreakers(pool, opts, { now: () => now, timers: false, onEvent: (e) => events.push(e) })
  const a = pool.get('a') as Target
  const br = breakers.get(a) as CircuitBreaker
  const clock = { get now () { return now }, advance (ms: number) { now += ms } }
  /** One try to target a with the given result. */
  const tryA = (ok: boolean): number => {
    const ticket = br.acquire(now)
    if (ticket === REFUSED) return ticket
    if (ok) br.success(ticket, now); else br.failure(ticket, now)
    return ticket
  }
  return { pool, breakers, a, br, events, clock, tryA }
}

t.test('rolling window counts buckets and slides', async (t) => {
  const w = new RollingWindow(1000, 10)
  w.record(true, 0); w.record(false, 50); w.record(false, 150)
  t.equal(w.total(150), 3)
  t.equal(w.failed(150), 1)
  t.equal(w.total(999), 3, 'all inside the window')
  t.equal(w.total(1050), 1, 'the first bucket (0-99 ms, two records) slid out')
  t.equal(w.total(1150), 0)
  w.record(true, 5000)
  t.equal(w.failed(5000), 1, 'a reused slot starts from zero')
  t.equal(w.total(5000), 1)
  w.reset()
  t.equal(w.total(5000), 0)
})

t.test('opens on the error ratio only with enough volume', async (t) => {
  const { a, br, events, tryA, pool } = setup({ errorThreshold: 50, volumeThreshold: 10, consecutiveFailures: 0 })
  for (let i = 0; i < 5; i++) tryA(true)
  for (let i = 0; i < 4; i++) tryA(false)
  t.equal(a.circuit, 'closed', '4/9 failed, below volume')
  const version = pool.version
  tryA(false)
  t.equal(a.circuit, 'open', '5/10 failed reaches 50 % with volume 10')
  t.ok(pool.version > version, 'pool touched so balancers see it')
  t.notOk(a.isEligible(Date.now()), 'open target is not eligible')
  t.notOk(usable(a, { now: Date.now() }), 'balancers skip it')
  t.equal(br.acquire(), REFUSED)
  t.match(events, [{ type: 'circuit_opened', upstream: 'users', target: 'a', cause: 'error_ratio', trips: 1, openMs: 5000 }])
})

t.test('stays closed below the ratio, and old failures slide out of the window', async (t) => {
  const { a, tryA, clock } = setup({ errorThreshold: 50, volumeThreshold: 4, window: 1000, consecutiveFailures: 0 })
  tryA(false); tryA(true); tryA(true); tryA(true); tryA(false)
  t.equal(a.circuit, 'closed', '2/5 < 50 %')
  clock.advance(1500)
  tryA(true); tryA(true); tryA(true); tryA(false)
  t.equal(a.circuit, 'closed', 'earlier failures left the window: 1/4')
  tryA(false); tryA(false)
  t.equal(a.circuit, 'open', '3/6 in the window')
})

t.test('opens after consecutiveFailures', async (t) => {
  const { a, tryA, events } = setup({ consecutiveFailures: 3, volumeThreshold: 1000 })
  tryA(false); tryA(false); tryA(true); tryA(false); tryA(false)
  t.equal(a.circuit, 'closed', 'a success resets the run')
  tryA(false)
  t.equal(a.circuit, 'open')
  t.equal(events[0]?.type === 'circuit_opened' && events[0].cause, 'consecutive_failures')
})

t.test('open -> half_open after openDuration -> closed on successful trials', async (t) => {
  const { a, br, events, clock, tryA } = setup({ consecutiveFailures: 1, openDuration: 1000, halfOpenRequests: 2 })
  tryA(false)
  t.equal(a.circuit, 'open')
  clock.advance(999)
  br.poll(clock.now)
  t.equal(a.circuit, 'open', 'still open 1 ms before the end')
  clock.advance(1)
  br.poll(clock.now)
  t.equal(a.circuit, 'half_open')
  t.ok(a.isEligible(clock.now), 'half_open with free trial slots is eligible')
  const t1 = br.acquire(clock.now)
  t.ok(a.isEligible(clock.now), 'one of two slots taken')
  const t2 = br.acquire(clock.now)
  t.not(t1, REFUSED); t.not(t2, REFUSED)
  t.equal(a.halfOpenFull, true)
  t.notOk(a.isEligible(clock.now), 'every trial slot taken: not eligible')
  t.equal(br.acquire(clock.now), REFUSED, 'a third request is not let through')
  br.success(t1, clock.now)
  t.equal(a.circuit, 'half_open', 'one trial is not enough')
  t.equal(br.acquire(clock.now), REFUSED, 'a passed trial keeps its slot')
  br.success(t2, clock.now)
  t.equal(a.circuit, 'closed', 'all trials passed')
  t.ok(a.isEligible(clock.now))
  t.same(events.map((e) => e.type), ['circuit_opened', 'circuit_half_opened', 'circuit_closed'])
  t.match(events[2], { upstream: 'users', target: 'a' })
})

t.test('acquire moves a due open circuit to half_open lazily', async (t) => {
  const { a, br, clock, tryA } = setup({ consecutiveFailures: 1, openDuration: 1000 })
  tryA(false)
  clock.advance(1000)
  t.equal(a.circuit, 'open', 'no timer: still open')
  t.not(br.acquire(clock.now), REFUSED, 'the due circuit admits a trial')
  t.equal(a.circuit, 'half_open')
})

t.test('a failed trial re-opens with a doubled duration, capped; a close resets it', async (t) => {
  const { a, br, clock, tryA, events } = setup({ consecutiveFailures: 1, openDuration: 1000, maxOpenDuration: 3000 })
  const opened = (): number[] => events.flatMap((e) => e.type === 'circuit_opened' ? [e.openMs] : [])
  tryA(false)
  for (let i = 0; i < 3; i++) {
    clock.advance(br.openUntil - clock.now)
    br.poll(clock.now)
    t.equal(a.circuit, 'half_open')
    tryA(false)
    t.equal(a.circuit, 'open')
  }
  t.same(opened(), [1000, 2000, 3000, 3000])
  t.match(events.filter((e) => e.type === 'circuit_opened').slice(1), [{ cause: 'half_open_failure', trips: 2 }, { trips: 3 }, { trips: 4 }])
  clock.advance(2999)
  br.poll(clock.now)
  t.equal(a.circuit, 'open', 'the capped period is 3000 ms')
  clock.advance(1)
  br.poll(clock.now)
  tryA(true)
  t.equal(a.circuit, 'closed')
  tryA(false)
  t.equal(opened().at(-1), 1000, 'after a close the next trip starts over')
})

t.test('release frees a trial slot; stale tickets are ignored', async (t) => {
  const { a, br, clock, tryA } = setup({ consecutiveFailures: 2, openDuration: 100 })
  const old = br.acquire(clock.now)
  tryA(false); tryA(false)
  t.equal(a.circuit, 'open')
  br.failure(old, clock.now)
  br.success(old, clock.now)
  clock.advance(100)
  br.poll(clock.now)
  const trial = br.acquire(clock.now)
  t.notOk(a.isEligible(clock.now))
  br.failure(old, clock.now)
  t.equal(a.circuit, 'half_open', 'a request from before the trip does not count as a trial')
  br.release(trial)
  t.ok(a.isEligible(clock.now), 'client abort frees the slot')
  tryA(true)
  t.equal(a.circuit, 'closed')
})

t.test('maxInFlight: at the cap the target is skipped', async (t) => {
  const { a, br, pool } = setup({ maxInFlight: 2 })
  const b = pool.get('b') as Target
  t.equal(a.maxInFlight, 2)
  const now = Date.now()
  t.not(br.acquire(now), REFUSED); a.onRequestStart()
  t.not(br.acquire(now), REFUSED); a.onRequestStart()
  t.notOk(a.isEligible(now), 'two in flight')
  t.notOk(usable(a, { now }))
  t.ok(usable(b, { now }), 'the other target still serves')
  t.equal(br.acquire(now), REFUSED)
  a.onRequestEnd(5, now)
  t.ok(a.isEligible(now))
})

t.test('pool membership: breakers follow added and removed targets; dispose restores targets', async (t) => {
  const { pool, breakers, a, tryA } = setup({ consecutiveFailures: 1, maxInFlight: 5 })
  const c = pool.add({ id: 'c', url: 'http://127.0.0.1:3003' })
  t.ok(breakers.get(c), 'a new target gets a breaker')
  t.equal(c.maxInFlight, 5)
  pool.remove('b')
  t.equal(breakers.acquire(pool.targets[0], Date.now()) !== REFUSED, true)
  const ticket = breakers.acquire(c)
  breakers.record(c, ticket, 'failure')
  t.equal(c.circuit, 'open', 'record() routes to the target breaker')
  tryA(false)
  t.equal(a.circuit, 'open')
  breakers.dispose()
  t.equal(a.circuit, 'closed')
  t.equal(c.circuit, 'closed')
  t.equal(a.maxInFlight, Infinity)
  t.equal(pool.listenerCount('change'), 0)
})

t.test('breakerOutcome', async (t) => {
  t.equal(breakerOutcome(200), 'success')
  t.equal(breakerOutcome(404), 'success')
  t.equal(breakerOutcome(503), 'failure')
  t.equal(breakerOutcome(undefined, Object.assign(new Error('x'), { code: 'ECONNREFUSED' })), 'failure')
  t.equal(breakerOutcome(undefined, Object.assign(new Error('x'), { code: 'UND_ERR_ABORTED' })), 'ignore')
})

t.test('with timers, open moves to half_open on its own (unref timer)', async (t) => {
  const pool = new UpstreamPool('users', [{ id: 'a', url: 'http://127.0.0.1:3001' }])
  const seen: string[] = []
  const breakers = new PoolBreakers(pool, { consecutiveFailures: 1, openDuration: 50 }, {
    onEvent: (e) => { seen.push(e.type); if (e.type === 'circuit_half_opened') pool.emit('half') },
  })
  t.teardown(() => breakers.dispose())
  const a = pool.targets[0]
  const half = once(pool, 'half')
  const started = Date.now()
  breakers.record(a, breakers.acquire(a), 'failure')
  t.equal(a.circuit, 'open')
  let guard: NodeJS.Timeout | undefined
  await Promise.race([half, new Promise((resolve, reject) => { guard = setTimeout(() => reject(new Error('no half-open within 5 s')), 5000) })])
  clearTimeout(guard)
  t.equal(a.circuit, 'half_open')
  t.ok(Date.now() - started >= 45, 'not before openDuration')
  t.same(seen, ['circuit_opened', 'circuit_half_opened'])
})

t.test('dispose clears the open timer', async (t) => {
  const pool = new UpstreamPool('users', [{ id: 'a', url: 'http://127.0.0.1:3001' }])
  let halfOpened = 0
  const breakers = new PoolBreakers(pool, { consecutiveFailures: 1, openDuration: 20 }, {
    onEvent: (e) => { if (e.type === 'circuit_half_opened') halfOpened++ },
  })
  const a = pool.targets[0]
  breakers.record(a, breakers.acquire(a), 'failure')
  breakers.dispose()
  await new Promise((resolve) => setTimeout(resolve, 80))
  t.equal(halfOpened, 0)
  t.equal(a.circuit, 'closed')
})
