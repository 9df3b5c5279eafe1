// decide(snapshot) → Action, one row per case: retryOn, idempotency, body, budget, untried target, deadline,
// maxRetries, Retry-After, fallback pool vs static fallback, no target (first try or later, open circuits),
// and a transport error (its code stands) vs a retried status (the response passes). Real RetryPolicy
// instances with an injected random source: every delay is exact.
import t from 'tap'
import { decide, hedges, type Action, type NoTarget, type TryFailure } from '../../lib/failover/decide.js'
import { RetryPolicy } from '../../lib/failover/retry-policy.js'

const T0 = 1_700_000_000_000
const half = (): number => 0.5

// random 0.5: the first retry waits 0.5 × min(250, 25 × 2^0) = 12.5 ms, the second 25 ms; a connect failure 0 ms
const P = new RetryPolicy({ random: half })
const CONNECT_ONLY = new RetryPolicy({ retryOn: ['connect_failure'], random: half })
const RANGE_5XX = new RetryPolicy({ retryOn: [[500, 599]], random: half })
const ONLY_503 = new RetryPolicy({ retryOn: [503], random: half })
const TIMEOUT_SET = new RetryPolicy({ retryOn: { connectFailure: false, reset: false, timeout: true, statuses: [] }, random: half })
const SLOW_CONNECT = new RetryPolicy({ connectRetryDelay: 100, random: half })
const OPT_IN = new RetryPolicy({ retryNonIdempotent: true, random: half })
const NO_RETRIES = new RetryPolicy({ maxRetries: 0, random: half })
const SMALL_BODY = new RetryPolicy({ maxRetryBodySize: 100, random: half })
const DEADLINE = new RetryPolicy({ timeout: 1000, random: half })

function failure (over: Partial<TryFailure> = {}): TryFailure {
  return {
    kind: 'failed',
    policy: P,
    error: undefined,
    method: 'GET',
    retries: 0,
    reason: 503,
    idempotencyKey: false,
    bodyBuffered: true,
    bodySize: 0,
    headersSent: false,
    startedAt: T0,
    now: T0 + 10,
    budgetRoom: true,
    untriedTarget: true,
    fallbackPool: false,
    staticFallback: false,
    ...over,
  }
}

function noTarget (over: Partial<NoTarget> = {}): NoTarget {
  return { kind: 'noTarget', firstTry: true, allCircuitsOpen: false, fallbackPool: false, staticFallback: false, ...over }
}

/** An action in one line: `retry 12.5`, `pass`, `pass (method)`, `error UPSTREAM_RESET (budget)`, `fallbackPool all_tries_failed (max_retries)`. */
function show (a: Action): string {
  let s: string
  switch (a.kind) {
    case 'retry': return `retry ${a.delay}`
    case 'pass': s = 'pass'; break
    case 'error': s = `error ${a.code}`; break
    case 'fallbackPool': case 'staticFallback': s = `${a.kind} ${a.cause}`; break
  }
  return a.why === undefined ? s : `${s} (${a.why})`
}

type Row = [name: string, snapshot: TryFailure | NoTarget, expected: string]

const rows: Row[] = [
  // --- retryOn: statuses ---
  ['GET 503, room, untried target: retry after the jittered delay', failure(), 'retry 12.5'],
  ['GET 502 (default retryOn)', failure({ reason: 502 }), 'retry 12.5'],
  ['GET 504, second retry: the delay doubles', failure({ reason: 504, retries: 1 }), 'retry 25'],
  ['GET 500 is not in the default retryOn: the response passes silently', failure({ reason: 500 }), 'pass'],
  ['GET 404: passes silently', failure({ reason: 404 }), 'pass'],
  ['retryOn [[500, 599]]: a 500 is retried', failure({ policy: RANGE_5XX, reason: 500 }), 'retry 12.5'],
  ['retryOn [503]: a 502 passes', failure({ policy: ONLY_503, reason: 502 }), 'pass'],
  ['retryOn [\'connect_failure\']: a 503 passes', failure({ policy: CONNECT_ONLY, reason: 503 }), 'pass'],
  // --- retryOn: transport errors ---
  ['connect failure: retried at once (connectRetryDelay 0)', failure({ reason: 'connect', error: 'UPSTREAM_CONNECT' }), 'retry 0'],
  ['connect failure with connectRetryDelay 100', failure({ policy: SLOW_CONNECT, reason: 'connect', error: 'UPSTREAM_CONNECT' }), 'retry 50'],
  ['reset', failure({ reason: 'reset', error: 'UPSTREAM_RESET' }), 'retry 12.5'],
  ['timeout', failure({ reason: 'timeout', error: 'UPSTREAM_TIMEOUT' }), 'retry 12.5'],
  ['an unclassified error is never retried: its code stands, silently', failure({ reason: 'other', error: 'UPSTREAM_BAD_RESPONSE' }), 'error UPSTREAM_BAD_RESPONSE'],
  ['retryOn [\'connect_failure\']: a connect failure is retried', failure({ policy: CONNECT_ONLY, reason: 'connect', error: 'UPSTREAM_CONNECT' }), 'retry 0'],
  ['retryOn [\'connect_failure\']: a reset stands', failure({ policy: CONNECT_ONLY, reason: 'reset', error: 'UPSTREAM_RESET' }), 'error UPSTREAM_RESET'],
  ['retryOn as the config\'s set { timeout }: a timeout is retried', failure({ policy: TIMEOUT_SET, reason: 'timeout', error: 'UPSTREAM_TIMEOUT' }), 'retry 12.5'],
  ['retryOn as the config\'s set { timeout }: a connect failure stands', failure({ policy: TIMEOUT_SET, reason: 'connect', error: 'UPSTREAM_CONNECT' }), 'error UPSTREAM_CONNECT'],
  // --- headers already sent: nothing can be changed, silently ---
  ['headers sent: the response passes, no retries_exhausted', failure({ headersSent: true, fallbackPool: true, staticFallback: true }), 'pass'],
  ['headers sent, transport error: its code stands', failure({ headersSent: true, reason: 'reset', error: 'UPSTREAM_RESET' }), 'error UPSTREAM_RESET'],
  // --- idempotency ---
  ['POST 503: not replayed', failure({ method: 'POST' }), 'pass (method)'],
  ['PATCH reset: not replayed, the error stands', failure({ method: 'PATCH', reason: 'reset', error: 'UPSTREAM_RESET' }), 'error UPSTREAM_RESET (method)'],
  ['POST timeout: not replayed', failure({ method: 'POST', reason: 'timeout', error: 'UPSTREAM_TIMEOUT' }), 'error UPSTREAM_TIMEOUT (method)'],
  ['POST connect failure: it never left, replayed', failure({ method: 'POST', reason: 'connect', error: 'UPSTREAM_CONNECT' }), 'retry 0'],
  ['POST 503 with an Idempotency-Key', failure({ method: 'POST', idempotencyKey: true }), 'retry 12.5'],
  ['PATCH 502 on a route with retryNonIdempotent', failure({ policy: OPT_IN, method: 'PATCH', reason: 502 }), 'retry 12.5'],
  ['PUT 503 (idempotent)', failure({ method: 'PUT' }), 'retry 12.5'],
  ['DELETE reset (idempotent)', failure({ method: 'DELETE', reason: 'reset', error: 'UPSTREAM_RESET' }), 'retry 12.5'],
  // --- body kinds ---
  ['a streamed body cannot be sent again', failure({ bodyBuffered: false }), 'pass (body)'],
  ['a streamed body, connect failure: still not replayable', failure({ bodyBuffered: false, reason: 'connect', error: 'UPSTREAM_CONNECT' }), 'error UPSTREAM_CONNECT (body)'],
  ['a buffered body over maxRetryBodySize', failure({ policy: SMALL_BODY, bodySize: 101 }), 'pass (body)'],
  ['a buffered body of exactly maxRetryBodySize', failure({ policy: SMALL_BODY, bodySize: 100 }), 'retry 12.5'],
  // --- budget ---
  ['no budget room: the response passes, exhausted for budget', failure({ budgetRoom: false }), 'pass (budget)'],
  ['no budget room, transport error: its code stands', failure({ budgetRoom: false, reason: 'reset', error: 'UPSTREAM_RESET' }), 'error UPSTREAM_RESET (budget)'],
  ['no budget room, static fallback configured', failure({ budgetRoom: false, staticFallback: true }), 'staticFallback all_tries_failed (budget)'],
  ['no budget room, but a non-retryable status: silent, the budget is never asked', failure({ budgetRoom: false, reason: 500 }), 'pass'],
  ['no budget room, max retries reached: max_retries is the reason, not budget', failure({ budgetRoom: false, retries: 2 }), 'pass (max_retries)'],
  // --- untried target ---
  ['every target tried: no_target', failure({ untriedTarget: false }), 'pass (no_target)'],
  ['every target tried, connect failure: its code stands', failure({ untriedTarget: false, reason: 'connect', error: 'UPSTREAM_CONNECT' }), 'error UPSTREAM_CONNECT (no_target)'],
  ['every target tried, fallback pool', failure({ untriedTarget: false, fallbackPool: true }), 'fallbackPool all_tries_failed (no_target)'],
  ['no budget and no untried target: budget is named (checked first)', failure({ budgetRoom: false, untriedTarget: false }), 'pass (budget)'],
  // --- maxRetries ---
  ['max retries (2) reached', failure({ retries: 2 }), 'pass (max_retries)'],
  ['maxRetries 0: the first failure is final', failure({ policy: NO_RETRIES, reason: 'reset', error: 'UPSTREAM_RESET' }), 'error UPSTREAM_RESET (max_retries)'],
  // --- Retry-After ---
  ['Retry-After 1 s (within maxRetryAfter): the delay is raised to it', failure({ retryAfter: '1' }), 'retry 1000'],
  ['Retry-After 5 s (over maxRetryAfter 1 s): the answer stands', failure({ retryAfter: '5' }), 'pass (retry_after)'],
  ['unparsable Retry-After: ignored', failure({ retryAfter: 'soon' }), 'retry 12.5'],
  // --- deadline (failover.timeout 1000 ms) ---
  ['deadline: 500 ms left, 12.5 ms delay', failure({ policy: DEADLINE, now: T0 + 500 }), 'retry 12.5'],
  ['deadline: 10 ms left, 12.5 ms delay: the answer stands', failure({ policy: DEADLINE, now: T0 + 990 }), 'pass (deadline)'],
  ['deadline: the retry would start exactly at the deadline', failure({ policy: DEADLINE, now: T0 + 987.5 }), 'pass (deadline)'],
  ['deadline passed, timeout error: 504 stands', failure({ policy: DEADLINE, now: T0 + 1000, reason: 'timeout', error: 'UPSTREAM_TIMEOUT' }), 'error UPSTREAM_TIMEOUT (deadline)'],
  ['deadline: no fallback either (pool or static)', failure({ policy: DEADLINE, now: T0 + 995, fallbackPool: true, staticFallback: true }), 'pass (deadline)'],
  // --- fallback precedence once retries are exhausted ---
  ['exhausted, fallback pool and static: the pool first', failure({ retries: 2, fallbackPool: true, staticFallback: true }), 'fallbackPool all_tries_failed (max_retries)'],
  ['exhausted, static only', failure({ retries: 2, staticFallback: true }), 'staticFallback all_tries_failed (max_retries)'],
  ['exhausted error, static fallback: the static answer replaces the error', failure({ retries: 2, reason: 'timeout', error: 'UPSTREAM_TIMEOUT', staticFallback: true }), 'staticFallback all_tries_failed (max_retries)'],
  ['POST 503, fallback pool: no replay there either, static instead', failure({ method: 'POST', fallbackPool: true, staticFallback: true }), 'staticFallback all_tries_failed (method)'],
  ['POST 503, fallback pool only: the response passes', failure({ method: 'POST', fallbackPool: true }), 'pass (method)'],
  ['POST connect failure, retries exhausted: the fallback pool may take it', failure({ method: 'POST', retries: 2, reason: 'connect', error: 'UPSTREAM_CONNECT', fallbackPool: true }), 'fallbackPool all_tries_failed (max_retries)'],
  ['POST with Idempotency-Key, exhausted: the fallback pool may take it', failure({ method: 'POST', idempotencyKey: true, retries: 2, fallbackPool: true }), 'fallbackPool all_tries_failed (max_retries)'],
  ['streamed body, fallback pool: not replayable, static instead', failure({ bodyBuffered: false, fallbackPool: true, staticFallback: true }), 'staticFallback all_tries_failed (body)'],
  // --- no target could take a try ---
  ['no target on the first try: no healthy target', noTarget(), 'error NO_HEALTHY_TARGET'],
  ['no target on the first try, every circuit open', noTarget({ allCircuitsOpen: true }), 'error CIRCUIT_OPEN'],
  ['no target after failed tries: retries exhausted (whatever the circuits)', noTarget({ firstTry: false, allCircuitsOpen: true }), 'error RETRIES_EXHAUSTED'],
  ['no target on the first try, fallback pool', noTarget({ fallbackPool: true }), 'fallbackPool no_eligible_target'],
  ['no target later, fallback pool', noTarget({ firstTry: false, fallbackPool: true }), 'fallbackPool all_tries_failed'],
  ['no target on the first try, static only', noTarget({ staticFallback: true, allCircuitsOpen: true }), 'staticFallback no_eligible_target'],
  ['no target later, static only', noTarget({ firstTry: false, staticFallback: true }), 'staticFallback all_tries_failed'],
  ['no target, fallback pool and static: the pool first', noTarget({ fallbackPool: true, staticFallback: true }), 'fallbackPool no_eligible_target'],
]

t.test('decide: one row per case', async (t) => {
  t.ok(rows.length >= 30, `${rows.length} rows`)
  for (const [name, snapshot, expected] of rows) t.equal(show(decide(snapshot)), expected, name)
})

t.test('decide is pure: the same snapshot, the same action; nothing in it is changed', async (t) => {
  const s = failure({ retries: 1, reason: 'reset', error: 'UPSTREAM_RESET', fallbackPool: true })
  const copy = { ...s }
  t.same(decide(s), decide(s))
  t.same(s, copy)
})

t.test('actions that carry nothing are shared: deciding "pass" allocates nothing', async (t) => {
  t.equal(decide(failure({ reason: 500 })), decide(failure({ reason: 404 })))
})

t.test('hedges: idempotent methods with a replayable body and a delay', async (t) => {
  t.ok(hedges(50, 'GET', true))
  t.ok(hedges(50, 'PUT', true))
  t.notOk(hedges(0, 'GET', true), 'no delay: no hedging')
  t.notOk(hedges(50, 'POST', true), 'POST is not idempotent')
  t.notOk(hedges(50, 'GET', false), 'a streamed body is sent once')
})
