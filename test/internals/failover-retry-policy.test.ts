import t from 'tap'
import { RetryPolicy, classifyError, isIdempotent, type FailedTry } from '../../lib/failover/retry-policy.js'
import { RetryBudget } from '../../lib/failover/retry-budget.js'

const T0 = 1_700_000_000_000

function failed (over: Partial<FailedTry> = {}): FailedTry {
  return {
    method: 'GET',
    retries: 0,
    reason: 503,
    idempotencyKey: false,
    bodyBuffered: true,
    bodySize: 0,
    headersSent: false,
    startedAt: T0,
    now: T0 + 10,
    ...over,
  }
}

function why (p: RetryPolicy, f: Partial<FailedTry>): string {
  const d = p.decide(failed(f))
  return d.retry ? 'retry' : d.why
}

t.test('idempotent methods', async (t) => {
  for (const m of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']) t.ok(isIdempotent(m), m)
  for (const m of ['POST', 'PATCH', 'CONNECT', 'get']) t.notOk(isIdempotent(m), m)
})

t.test('truth table: method x reason x idempotency key x opt-in', async (t) => {
  const p = new RetryPolicy({ random: () => 0 })
  const optIn = new RetryPolicy({ retryNonIdempotent: true, random: () => 0 })
  const rows: Array<[string, FailedTry['reason'], boolean, RetryPolicy, string]> = [
    ['GET', 503, false, p, 'retry'],
    ['GET', 502, false, p, 'retry'],
    ['GET', 504, false, p, 'retry'],
    ['GET', 500, false, p, 'not_retryable'],
    ['GET', 404, false, p, 'not_retryable'],
    ['GET', 'reset', false, p, 'retry'],
    ['GET', 'timeout', false, p, 'retry'],
    ['GET', 'connect', false, p, 'retry'],
    ['GET', 'other', false, p, 'not_retryable'],
    ['PUT', 503, false, p, 'retry'],
    ['DELETE', 'reset', false, p, 'retry'],
    ['HEAD', 'timeout', false, p, 'retry'],
    ['OPTIONS', 504, false, p, 'retry'],
    // the request reached an upstream: a POST or PATCH is not replayed...
    ['POST', 503, false, p, 'method'],
    ['POST', 'reset', false, p, 'method'],
    ['POST', 'timeout', false, p, 'method'],
    ['PATCH', 502, false, p, 'method'],
    // ...unless it never left (connect failure)...
    ['POST', 'connect', false, p, 'retry'],
    ['PATCH', 'connect', false, p, 'retry'],
    // ...or carries an Idempotency-Key, or the route opted in
    ['POST', 503, true, p, 'retry'],
    ['PATCH', 'reset', true, p, 'retry'],
    ['POST', 'timeout', false, optIn, 'retry'],
    ['POST', 'other', true, p, 'not_retryable'],
  ]
  for (const [method, reason, idempotencyKey, policy, expected] of rows) {
    t.equal(why(policy, { method, reason, idempotencyKey }), expected, `${method} ${reason}${idempotencyKey ? ' +key' : ''}${policy === optIn ? ' +optIn' : ''}`)
  }
})

t.test('retryOn narrows or widens what is retried', async (t) => {
  const p = new RetryPolicy({ retryOn: ['connect', 500] })
  t.equal(why(p, { reason: 500 }), 'retry')
  t.equal(why(p, { reason: 503 }), 'not_retryable')
  t.equal(why(p, { reason: 'reset' }), 'not_retryable')
  t.ok(p.retriesStatus(500))
  t.notOk(p.retriesStatus(502))
})

t.test('retryOn in the config\'s forms: connect_failure, ranges, the normalized object', async (t) => {
  const items = new RetryPolicy({ retryOn: ['connect_failure', [500, 504], 429] })
  t.equal(why(items, { reason: 'connect' }), 'retry')
  t.equal(why(items, { reason: 'reset' }), 'not_retryable')
  for (const s of [500, 502, 504, 429]) t.ok(items.retriesStatus(s), `${s}`)
  for (const s of [505, 499, 200]) t.notOk(items.retriesStatus(s), `${s}`)
  const normalized = new RetryPolicy({ retryOn: { connectFailure: false, reset: true, timeout: true, statuses: [[500, 599]] } })
  t.equal(why(normalized, { reason: 'connect' }), 'not_retryable')
  t.equal(why(normalized, { reason: 'timeout' }), 'retry')
  t.equal(why(normalized, { reason: 599 }), 'retry')
  t.equal(why(normalized, { reason: 404 }), 'not_retryable')
})

t.test('Retry-After: honoured up to maxRetryAfter, beyond it the answer stands', async (t) => {
  const p = new RetryPolicy({ maxRetryAfter: 2000, random: () => 0 })
  t.same(p.decide(failed({ retryAfter: '2' })), { retry: true, delayMs: 2000 })
  t.same(p.decide(failed({ retryAfter: '3' })), { retry: false, why: 'retry_after' })
  t.same(p.decide(failed({ retryAfter: new Date(T0 + 10 + 60_000).toUTCString() })), { retry: false, why: 'retry_after' }, 'HTTP date')
  t.same(p.decide(failed({ retryAfter: 'nonsense' })), { retry: true, delayMs: 0 }, 'an unparsable header is ignored')
})

t.test('maxRetries', async (t) => {
  const p = new RetryPolicy({ maxRetries: 2 })
  t.equal(why(p, { retries: 0 }), 'retry')
  t.equal(why(p, { retries: 1 }), 'retry')
  t.equal(why(p, { retries: 2 }), 'max_retries')
  t.equal(why(new RetryPolicy({ maxRetries: 0 }), {}), 'max_retries')
})

t.test('body: replayed only when buffered under maxRetryBodySize', async (t) => {
  const p = new RetryPolicy()
  t.equal(why(p, { method: 'PUT', bodySize: 64 * 1024 }), 'retry', 'exactly 64 KB')
  t.equal(why(p, { method: 'PUT', bodySize: 64 * 1024 + 1 }), 'body')
  t.equal(why(p, { method: 'PUT', bodyBuffered: false }), 'body', 'a streamed body cannot be replayed')
  t.equal(why(p, { method: 'POST', reason: 'connect', bodyBuffered: false }), 'body', 'not even after a connect failure')
  t.equal(why(p, { method: 'POST', reason: 'connect', bodySize: 1000 }), 'retry')
  t.equal(why(new RetryPolicy({ maxRetryBodySize: 10 }), { method: 'PUT', bodySize: 11 }), 'body')
})

t.test('never after response headers were sent', async (t) => {
  const p = new RetryPolicy()
  t.equal(why(p, { headersSent: true }), 'headers_sent')
  t.equal(why(p, { headersSent: true, reason: 'connect' }), 'headers_sent')
})

t.test('deadline: no retry that cannot start before it', async (t) => {
  const p = new RetryPolicy({ timeout: 1000, retryDelay: 100, maxRetryDelay: 100, random: () => 0.5 })
  t.equal(why(p, { now: T0 + 900 }), 'retry', 'starts at +950')
  t.equal(why(p, { now: T0 + 950 }), 'deadline', 'would start at the deadline')
  t.equal(why(p, { now: T0 + 2000 }), 'deadline')
  const ra = new RetryPolicy({ timeout: 1000, maxRetryAfter: 5000, random: () => 0 })
  t.equal(why(ra, { now: T0 + 100, retryAfter: '2' }), 'deadline', 'a Retry-After past the deadline')
  t.equal(why(new RetryPolicy({ timeout: 0 }), { now: T0 + 1e9 }), 'retry', 'timeout 0 = no deadline')
})

t.test('delay comes from the backoff', async (t) => {
  const p = new RetryPolicy({ maxRetries: 5, retryDelay: 100, maxRetryDelay: 1000, random: () => 0.5, maxRetryAfter: 2000 })
  t.same(p.decide(failed({ retries: 0 })), { retry: true, delayMs: 50 })
  t.same(p.decide(failed({ retries: 2 })), { retry: true, delayMs: 200 })
  t.same(p.decide(failed({ reason: 'connect' })), { retry: true, delayMs: 0 })
  t.same(p.decide(failed({ retryAfter: '1' })), { retry: true, delayMs: 1000 })
})

t.test('budget is checked last and only counts retries refused for budget', async (t) => {
  const budget = new RetryBudget({ budgetPercent: 20, minRetryConcurrency: 1 })
  const p = new RetryPolicy()
  t.equal(why(p, { reason: 404 }), 'not_retryable')
  t.equal(p.decide(failed({ method: 'POST' }), budget).retry, false)
  t.equal(budget.exhausted, 0, 'refusals for other reasons do not touch the budget')
  t.equal(p.decide(failed(), budget).retry, true, 'first retry takes the one slot')
  t.equal(budget.retries, 1)
  t.same(p.decide(failed(), budget), { retry: false, why: 'budget' })
  t.equal(budget.exhausted, 1)
  budget.release()
  t.equal(p.decide(failed(), budget).retry, true, 'released slot is reusable')
})

t.test('tryTimeout: perTryTimeout cut to the deadline', async (t) => {
  const p = new RetryPolicy({ timeout: 1000, perTryTimeout: 300 })
  t.equal(p.tryTimeout(T0, T0), 300)
  t.equal(p.tryTimeout(T0, T0 + 800), 200)
  t.equal(p.tryTimeout(T0, T0 + 1500), 0)
  t.equal(new RetryPolicy().tryTimeout(T0, T0), Infinity)
  t.equal(new RetryPolicy({ timeout: 500 }).tryTimeout(T0, T0 + 100), 400)
})

t.test('classifyError maps undici and node codes', async (t) => {
  const err = (code: string, extra: Record<string, unknown> = {}): Error => Object.assign(new Error(code), { code }, extra)
  const cases: Array<[unknown, string]> = [
    [err('ECONNREFUSED', { syscall: 'connect' }), 'connect'],
    [err('ECONNREFUSED'), 'connect'],
    [err('UND_ERR_CONNECT_TIMEOUT'), 'connect'],
    [err('ENOTFOUND', { syscall: 'getaddrinfo' }), 'connect'],
    [err('EHOSTUNREACH'), 'connect'],
    [err('ENETUNREACH'), 'connect'],
    [err('EAI_AGAIN'), 'connect'],
    [err('ETIMEDOUT', { syscall: 'connect' }), 'connect'],
    [err('ETIMEDOUT', { syscall: 'read' }), 'timeout'],
    [err('ECONNRESET'), 'reset'],
    [err('EPIPE', { syscall: 'write' }), 'reset'],
    [err('UND_ERR_SOCKET'), 'reset'],
    [err('UND_ERR_HEADERS_TIMEOUT'), 'timeout'],
    [err('UND_ERR_BODY_TIMEOUT'), 'timeout'],
    [err('FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT'), 'timeout'],
    [new DOMException('timed out', 'TimeoutError'), 'timeout'],
    [new DOMException('aborted', 'AbortError'), 'other'],
    [err('UND_ERR_ABORTED'), 'other'],
    [err('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'), 'other'],
    [new Error('boom'), 'other'],
    [undefined, 'other'],
    ['ECONNRESET', 'other'],
    // reply-from wraps the cause: the deepest known code wins
    [err('FST_REPLY_FROM_INTERNAL_SERVER_ERROR', { cause: err('ECONNREFUSED', { syscall: 'connect' }) }), 'connect'],
    [err('FST_REPLY_FROM_GATEWAY_TIMEOUT', { cause: err('UND_ERR_HEADERS_TIMEOUT') }), 'timeout'],
    [new TypeError('fetch failed', { cause: err('UND_ERR_SOCKET') }), 'reset'],
  ]
  for (const [e, expected] of cases) {
    const label = e instanceof Error || e instanceof DOMException ? `${(e as { code?: string }).code ?? e.name}` : String(e)
    t.equal(classifyError(e), expected, label)
  }
})

t.test('deciding no allocates nothing', async (t) => {
  const p = new RetryPolicy()
  t.equal(p.decide(failed({ headersSent: true })), p.decide(failed({ headersSent: true })), 'same frozen verdict object')
})
