// The store Deadline on a fake clock: on time it expires at its length; a period in which this process was starved
// (the stall meter's tick came late) is not charged to Redis; however long the starving, it expires by deadlineCap; cancel stops it.
import t from 'tap'
import { Deadline, deadlineCap, withDeadline, RateLimitStoreError } from '../../lib/ratelimit/deadline.js'
import { FakeClock } from '../helpers/fake-clock.js'

function deadline (ms: number): { clock: FakeClock, expired: () => number | undefined, d: Deadline } {
  const clock = new FakeClock(5_000)
  let waited: number | undefined
  const d = new Deadline(ms, (w) => { waited = w }, clock)
  return { clock, expired: () => waited, d }
}

t.test('on time: expires at its length, after the poll phase', async (t) => {
  const { clock, expired } = deadline(30)
  await clock.advance(29)
  t.equal(expired(), undefined, 'not at 29 ms')
  await clock.advance(1)
  t.equal(expired(), 30, 'at 30 ms')
})

t.test('a stall of this process is not charged: the deadline counts only the time it ran on time', async (t) => {
  const { clock, expired } = deadline(30)
  await clock.advance(10)
  // starved from 10 to 60 ms: the meter's tick due at 15 comes at 60, 45 ms late; the timer due at 30 fires at 60
  await clock.stall(50)
  t.equal(expired(), undefined, 'not expired at 60 ms: 15 ms charged')
  await clock.advance(14)
  t.equal(expired(), undefined, 'nor 14 ms of on-time running later')
  await clock.advance(1)
  t.equal(expired(), 75, 'expired after 30 ms that ran on time (0-15 and 60-75)')
})

t.test('however long the starving, it expires by deadlineCap: a hung Redis still fails fast', async (t) => {
  const { clock, expired } = deadline(30)
  t.equal(deadlineCap(30), 120)
  for (let i = 0; i < 10 && expired() === undefined; i++) await clock.stall(25)
  t.equal(expired(), 125, 'at the first timer past the cap (120 ms)')
})

t.test('cancel stops it; withDeadline takes the work when it settles first, and rejects at the deadline when not', async (t) => {
  const { clock, expired, d } = deadline(30)
  d.cancel()
  await clock.advance(1000)
  t.equal(expired(), undefined)
  t.equal(clock.pending, 0, 'no timer left behind')

  const fake = new FakeClock()
  let answer!: (v: string) => void
  const p = withDeadline(new Promise<string>((resolve) => { answer = resolve }), 30, fake)
  await fake.advance(20)
  answer('yes')
  t.equal(await p, 'yes')
  t.equal(fake.pending, 1, 'the deadline is cancelled: only the stall meter\'s tick is left')
  await fake.advance(5)
  t.equal(fake.pending, 0, 'which stops at its next tick, no deadline running')

  const never = withDeadline(new Promise<never>(() => {}), 30, fake).catch((e: unknown) => e)
  await fake.advance(30)
  const err = await never as RateLimitStoreError
  t.ok(err instanceof RateLimitStoreError && err.kind === 'timeout' && err.waitedMs === 30)
})
