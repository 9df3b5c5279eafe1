// combine(): one request's answer from its rules' outcomes, as a table. Pure: no store, no clock, no Fastify.
import t from 'tap'
import { combine, type Combined } from '../../lib/ratelimit/combine.js'
import { FAIL_CLOSED, FAIL_OPEN, type Outcome } from '../../lib/ratelimit/outage.js'

const ok = (remaining: number, resetMs = 1000, limit = 10): Outcome => ({ allowed: true, limit, remaining, resetMs, retryAfterMs: 0 })
const no = (retryAfterMs: number, limit = 10): Outcome => ({ allowed: false, limit, remaining: 0, resetMs: retryAfterMs, retryAfterMs })
const local = (o: Outcome): Outcome => ({ ...o, source: 'local' })
const E = { shadow: false }
const S = { shadow: true }

interface Row {
  name: string
  rules: Array<{ shadow: boolean }>
  outcomes: Outcome | undefined | Array<Outcome | undefined>
  want: Partial<Combined>
}

const rows: Row[] = [
  { name: 'one rule allows', rules: [E], outcomes: ok(9), want: { kind: 'allow', shown: 0, retryAfter: 0, label: 'allowed', shadow: -1 } },
  { name: 'one rule refuses', rules: [E], outcomes: no(1500), want: { kind: 'deny', shown: 0, retryAfter: 1500, label: 'limited' } },
  { name: 'cost 0: not consulted', rules: [E], outcomes: undefined, want: { kind: 'allow', shown: -1, retryAfter: 0, label: 'allowed' } },
  { name: 'fail_open: passes undecided, no headers', rules: [E], outcomes: FAIL_OPEN, want: { kind: 'allow', shown: -1, label: 'error_open' } },
  { name: 'fail_closed: 503', rules: [E], outcomes: FAIL_CLOSED, want: { kind: 'unavailable', shown: -1, retryAfter: 0, label: 'error_closed' } },
  { name: 'local fallback allows', rules: [E], outcomes: local(ok(3)), want: { kind: 'allow', shown: 0, label: 'local' } },
  { name: 'local fallback refuses', rules: [E], outcomes: local(no(800)), want: { kind: 'deny', shown: 0, retryAfter: 800, label: 'local' } },
  { name: 'shadow rule over its limit: not enforced, logged', rules: [S], outcomes: no(500), want: { kind: 'allow', shown: -1, retryAfter: 0, label: 'shadow_limited', shadow: 0 } },
  { name: 'shadow rule under fail_closed: never refuses', rules: [S], outcomes: FAIL_CLOSED, want: { kind: 'allow', shown: -1, label: 'allowed', shadow: -1 } },
  { name: 'one rule, as an array of one', rules: [E], outcomes: [no(700)], want: { kind: 'deny', shown: 0, retryAfter: 700, label: 'limited' } },
  { name: 'two allow: the fewer remaining shows', rules: [E, E], outcomes: [ok(8), ok(2)], want: { kind: 'allow', shown: 1, label: 'allowed' } },
  { name: 'two allow, same remaining: the later reset shows', rules: [E, E], outcomes: [ok(2, 5000), ok(2, 1000)], want: { shown: 0 } },
  { name: 'one refuses of two: deny, its headers', rules: [E, E], outcomes: [ok(1), no(2000)], want: { kind: 'deny', shown: 1, retryAfter: 2000, label: 'limited' } },
  { name: 'two refuse: Retry-After is the longest, its headers', rules: [E, E, E], outcomes: [no(1000), ok(5), no(3000)], want: { kind: 'deny', shown: 2, retryAfter: 3000 } },
  { name: 'a refusal beats fail_closed', rules: [E, E], outcomes: [FAIL_CLOSED, no(1200)], want: { kind: 'deny', shown: 1, retryAfter: 1200, label: 'limited' } },
  { name: 'fail_open beside a decision: its headers show', rules: [E, E], outcomes: [FAIL_OPEN, ok(4)], want: { kind: 'allow', shown: 1, label: 'error_open' } },
  { name: 'fail_closed beside an allow: 503, the allow\'s headers', rules: [E, E], outcomes: [ok(4), FAIL_CLOSED], want: { kind: 'unavailable', shown: 0, label: 'error_closed' } },
  { name: 'fail_closed beats fail_open', rules: [E, E], outcomes: [FAIL_OPEN, FAIL_CLOSED], want: { kind: 'unavailable', shown: -1, label: 'error_closed' } },
  { name: 'local label wins over limited', rules: [E, E], outcomes: [local(ok(1)), no(900)], want: { kind: 'deny', shown: 1, retryAfter: 900, label: 'local' } },
  { name: 'shadow refusal beside an enforced allow', rules: [S, E], outcomes: [no(400), ok(6)], want: { kind: 'allow', shown: 1, label: 'shadow_limited', shadow: 0 } },
  { name: 'a shadow refusal never sets Retry-After', rules: [S, E], outcomes: [no(9000), no(100)], want: { kind: 'deny', shown: 1, retryAfter: 100, label: 'limited', shadow: 0 } },
  { name: 'two shadow refusals: the first is logged', rules: [E, S, S], outcomes: [ok(3), no(1), no(2)], want: { kind: 'allow', shown: 0, shadow: 1, label: 'shadow_limited' } },
  { name: 'rules of cost 0 are skipped by index', rules: [E, E, E], outcomes: [undefined, ok(5), undefined], want: { kind: 'allow', shown: 1, label: 'allowed' } },
  { name: 'every rule cost 0', rules: [E, S], outcomes: [undefined, undefined], want: { kind: 'allow', shown: -1, retryAfter: 0, label: 'allowed', shadow: -1 } },
  { name: 'a shadow rule\'s decision never shows', rules: [S, E], outcomes: [ok(0), ok(7)], want: { shown: 1, label: 'allowed' } },
]

t.ok(rows.length >= 15)
for (const row of rows) {
  t.test(row.name, async (t) => {
    const got = combine(row.rules, row.outcomes)
    t.match(got, row.want)
    // invariants of every row
    t.equal(got.retryAfter > 0, got.kind === 'deny', 'Retry-After only on a refusal')
    if (got.shown !== -1) t.equal(row.rules[got.shown].shadow, false, 'the headers show an enforced rule')
    if (got.shadow !== -1) t.equal(row.rules[got.shadow].shadow, true, 'shadow names a shadow rule')
  })
}
