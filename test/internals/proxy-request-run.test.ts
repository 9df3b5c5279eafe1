// RequestRun driven through ProxyEngine with a fake undici Agent and a fake clock: no socket, no sleep.
//
// The seam is the one production uses: the engine takes `agent` (the Dispatcher tries go through) and
// `clock`. The fake reply's `from()` plays @fastify/reply-from's undici path (lib/request.js handleUndici and
// index.js's callback): getUpstream, rewriteRequestHeaders, then `engine.dispatcher.request()` (undici's own
// request() and RequestHandler, over the real TryDispatcher and TryHandler), then rewriteHeaders + code +
// onResponse, or onError with the error wrapped. The fake agent keeps each dispatched try for the test to
// answer by hand (headers, body, error), and its abort function errors the handler synchronously, as
// undici's client does (util.errorRequest). Time moves only when the test advances the fake clock; the
// awaits below are event-loop turns for microtasks and promises (undici's callbacks, body reads), never timers.
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import t, { type Test } from 'tap'
import { Dispatcher } from 'undici'
import { GatewayError } from '../../lib/errors.js'
import { Notifications, type FailoverEvent } from '../../lib/failover/index.js'
import type { RetryBudget } from '../../lib/failover/retry-budget.js'
import type { Clock } from '../../lib/proxy/clock.js'
import { kProxy, ProxyEngine } from '../../lib/proxy/engine.js'
import { FailoverRegistry, type FailoverOptions, type FallbackResponse } from '../../lib/proxy/failover-registry.js'
import type { RoutePlan } from '../../lib/proxy/types.js'
import type { CircuitBreakerOptions } from '../../lib/failover/breaker-circuit.js'
import { UpstreamRegistry, type TryResult } from '../../lib/upstream/registry.js'

const T0 = 1_700_000_000_000

// --- the fake clock ---

interface FakeTimer { at: number, seq: number, fn: (arg: unknown) => void, arg: unknown }

class FakeClock implements Clock {
  t = T0
  private seq = 0
  private timers: FakeTimer[] = []
  now (): number { return this.t }
  setTimeout<T> (fn: (arg: T) => void, ms: number, arg: T): unknown {
    const timer: FakeTimer = { at: this.t + ms, seq: this.seq++, fn: fn as (arg: unknown) => void, arg }
    this.timers.push(timer)
    return timer
  }

  clearTimeout (timer: unknown): void {
    const i = this.timers.indexOf(timer as FakeTimer)
    if (i >= 0) this.timers.splice(i, 1)
  }

  get pending (): number { return this.timers.length }

  /** Move time by `ms`, firing each timer due, in order, at its own instant. */
  advance (ms: number): void {
    const end = this.t + ms
    for (;;) {
      let next: FakeTimer | undefined
      for (const tm of this.timers) if (tm.at <= end && (next === undefined || tm.at < next.at || (tm.at === next.at && tm.seq < next.seq))) next = tm
      if (next === undefined) break
      this.timers.splice(this.timers.indexOf(next), 1)
      this.t = next.at
      next.fn(next.arg)
    }
    this.t = end
  }
}

// --- the fake agent: each dispatch is a try the test answers ---

class FakeTry {
  readonly opts: Dispatcher.DispatchOptions
  private readonly handler: Dispatcher.DispatchHandler
  /** Why the proxy aborted this try (undici's abort), if it did. */
  abortedWith: Error | undefined = undefined
  private over = false

  constructor (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
    this.opts = opts
    this.handler = handler
    // undici's client hands the handler its abort once the request is on a connection
    this.handler.onConnect!((reason?: Error) => {
      if (this.over) return
      this.abortedWith = reason
      this.fail(reason ?? new Error('aborted'))
    })
  }

  get origin (): string { return String(this.opts.origin) }

  /** The upstream answers: head, then the whole body. */
  respond (status: number, body = 'ok', headers: Record<string, string> = {}): void {
    if (this.over) throw new Error('try already over')
    const h: Record<string, string> = { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)), ...headers }
    const raw: Buffer[] = []
    for (const [k, v] of Object.entries(h)) raw.push(Buffer.from(k), Buffer.from(v))
    this.handler.onHeaders!(status, raw, () => {}, 'X')
    if (this.over) return // aborted while its head was handled
    if (body !== '') this.handler.onData!(Buffer.from(body))
    this.over = true
    this.handler.onComplete!([]) // undici's h1 client: the (empty) trailer list
  }

  /** The try fails before (or instead of) its response: refused, reset, timed out... */
  fail (err: Error): void {
    if (this.over) return
    this.over = true
    this.handler.onError!(err)
  }
}

class FakeAgent extends Dispatcher {
  readonly tries: FakeTry[] = []
  override dispatch (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    this.tries.push(new FakeTry(opts, handler))
    return true
  }
}

function sysError (code: string, syscall?: string): Error {
  return Object.assign(new Error(code), { code, syscall })
}

// --- the fake Fastify reply, with reply-from's `from` ---

type FromOpts = {
  getUpstream (req: unknown, base: string): string
  rewriteRequestHeaders (req: unknown, headers: Record<string, unknown>): Record<string, unknown>
  rewriteHeaders (headers: Record<string, unknown>, req: unknown): Record<string, unknown>
  onResponse (req: unknown, reply: unknown, res: unknown): void
  onError (reply: unknown, e: { error: Error }): void
  body?: unknown
}

interface FakeReply {
  request: {
    method: string
    url: string
    ip: string
    protocol: string
    headers: Record<string, string | undefined>
    body?: unknown
    raw: { url: string, complete: boolean, destroyed: boolean, aborted: boolean, socket: { remoteAddress: string } }
    [kProxy]?: unknown
  }
  raw: EventEmitter & { destroyed: boolean, writableFinished: boolean, statusCode: number, headersSent: boolean, flushHeaders (): void }
  sent: boolean
  elapsedTime: number
  statusCode: number
  hdrs: Record<string, unknown>
  /** What was sent, and how many times send() was called. */
  payload: unknown
  sends: number
  warnings: string[]
  log: { warn (obj: object, msg: string): void }
  code (s: number): FakeReply
  type (ct: string): FakeReply
  header (k: string, v: unknown): FakeReply
  headers (o: Record<string, unknown>): FakeReply
  removeHeader (k: string): FakeReply
  getHeader (k: string): unknown
  getHeaders (): Record<string, unknown>
  send (payload?: unknown): FakeReply
  from (source: string, opts: FromOpts): FakeReply
  /** The client goes away before its answer. */
  clientLeaves (): void
}

function fakeReply (engine: ProxyEngine, method = 'GET', requestHeaders: Record<string, string> = {}, body?: unknown): FakeReply {
  const raw = Object.assign(new EventEmitter(), {
    destroyed: false,
    writableFinished: false,
    statusCode: 200,
    headersSent: false,
    flushHeaders () {},
  })
  const reply: FakeReply = {
    request: {
      method,
      url: '/things?x=1',
      ip: '127.0.0.1',
      protocol: 'http',
      headers: { host: 'gw.test', ...requestHeaders },
      body,
      raw: { url: '/things?x=1', complete: true, destroyed: false, aborted: false, socket: { remoteAddress: '127.0.0.1' } },
    },
    raw,
    sent: false,
    elapsedTime: 0,
    statusCode: 200,
    hdrs: {},
    payload: undefined,
    sends: 0,
    warnings: [],
    log: { warn (_obj, msg) { reply.warnings.push(msg) } },
    code (s) { reply.statusCode = s; raw.statusCode = s; return reply },
    type (ct) { reply.hdrs['content-type'] = ct; return reply },
    header (k, v) { reply.hdrs[k.toLowerCase()] = v; return reply },
    headers (o) { for (const [k, v] of Object.entries(o)) if (v !== undefined) reply.hdrs[k.toLowerCase()] = v; return reply },
    removeHeader (k) { delete reply.hdrs[k.toLowerCase()]; return reply },
    getHeader (k) { return reply.hdrs[k.toLowerCase()] },
    getHeaders () { return { ...reply.hdrs } },
    send (payload) {
      reply.sends++
      if (reply.sent) return reply
      reply.sent = true
      reply.payload = payload
      raw.headersSent = true
      raw.writableFinished = true
      // Fastify's response ends; node emits 'close' after 'finish'
      process.nextTick(() => raw.emit('close'))
      return reply
    },
    from (source, opts) {
      // @fastify/reply-from, undici path
      const req = reply.request
      const origin = opts.getUpstream(req, '')
      const headers = opts.rewriteRequestHeaders(req, { ...req.headers })
      engine.dispatcher.request({ origin, path: source, method: req.method as Dispatcher.HttpMethod, headers: headers as Record<string, string>, body: opts.body as Buffer | undefined }, (err, res) => {
        if (err !== null) {
          if (!reply.sent) opts.onError(reply, { error: new Error(err.message, { cause: err }) })
          return
        }
        reply.headers(opts.rewriteHeaders(res.headers, req))
        reply.code(res.statusCode)
        if (req.raw.aborted) { res.body.destroy(); return }
        opts.onResponse(req, reply, { statusCode: res.statusCode, headers: res.headers, stream: res.body })
      })
      return reply
    },
    clientLeaves () {
      reply.request.raw.aborted = true
      raw.destroyed = true
      raw.emit('close')
    },
  }
  return reply
}

// --- a budget spy: every lease released exactly once ---

interface BudgetCounts { started: number, ended: number, acquired: number, released: number }

function spyBudget (b: RetryBudget): BudgetCounts {
  const c: BudgetCounts = { started: 0, ended: 0, acquired: 0, released: 0 }
  const { requestStarted, requestEnded, tryAcquire, release } = b
  b.requestStarted = function () { c.started++; requestStarted.call(b) }
  b.requestEnded = function () { c.ended++; requestEnded.call(b) }
  b.tryAcquire = function () { const ok = tryAcquire.call(b); if (ok) c.acquired++; return ok }
  b.release = function () { c.released++; release.call(b) }
  return c
}

// --- one gateway: upstream 'api' (targets a, b, c as asked), maybe a 'backup' upstream ---

interface Setup {
  clock: FakeClock
  agent: FakeAgent
  engine: ProxyEngine
  events: FailoverEvent[]
  ended: TryResult[]
  budget: BudgetCounts
  apiBudget: RetryBudget
  upstreams: UpstreamRegistry
  failovers: FailoverRegistry
  /** Proxy one request; returns its reply. */
  proxy (method?: string, headers?: Record<string, string>, body?: unknown): FakeReply
}

interface SetupOptions {
  targets?: number
  failover?: FailoverOptions
  breaker?: CircuitBreakerOptions
  fallbackResponse?: FallbackResponse
  backup?: boolean
}

function setup (o: SetupOptions = {}): Setup {
  const clock = new FakeClock()
  const agent = new FakeAgent()
  const upstreams = new UpstreamRegistry()
  const ids = ['a', 'b', 'c'].slice(0, o.targets ?? 2)
  const api = upstreams.upsert('api', { targets: ids.map((id, i) => ({ id, url: `http://10.0.0.${i + 1}:8080` })) })
  if (o.backup === true) upstreams.upsert('backup', { targets: [{ id: 'z', url: 'http://10.0.9.9:8080' }] })
  const ended: TryResult[] = []
  api.observers.push({ onTryEnd (_t, r) { ended.push({ ...r }) } })
  const failovers = new FailoverRegistry(
    { api: { random: () => 0.5, ...o.failover } },
    o.breaker === undefined ? {} : { api: o.breaker },
  )
  const events: FailoverEvent[] = []
  const notifications = new Notifications([{ notify (e) { events.push(e) } }])
  const engine = new ProxyEngine({ upstreams, failovers, notifications, failoverMetrics: undefined, agent, clock })
  const apiBudget = failovers.get(api).budget
  const budget = spyBudget(apiBudget)
  const plan: RoutePlan = {
    upstreamName: 'api',
    strategy: undefined,
    hashKey: undefined,
    label: 'api',
    entry: api,
    generation: 0,
    metrics: undefined,
    failover: failovers.forRoute('api', undefined, o.fallbackResponse),
  }
  return {
    clock,
    agent,
    engine,
    events,
    ended,
    budget,
    apiBudget,
    upstreams,
    failovers,
    proxy (method = 'GET', headers = {}, body) {
      const reply = fakeReply(engine, method, headers, body)
      engine.proxy(reply as never, plan, api)
      return reply
    },
  }
}

/** Let microtasks, nextTicks and promise chains run (event-loop turns; no timer, no time passes). */
async function settle (): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

function stateOf (reply: FakeReply): string {
  return (reply.request[kProxy] as { state: { kind: string } }).state.kind
}

function bodyOf (reply: FakeReply): string {
  const p = reply.payload
  return Buffer.isBuffer(p) ? p.toString() : typeof p === 'string' ? p : ''
}

function errorCode (reply: FakeReply): string | undefined {
  return reply.payload instanceof GatewayError ? reply.payload.code : undefined
}

/** The run is over and left nothing behind: done, every lease released exactly once, no timer, no request in flight. */
function checkClean (t: Test, s: Setup, reply: FakeReply): void {
  t.equal(stateOf(reply), 'done', 'the run is done')
  t.equal(s.budget.ended, s.budget.started, `every active lease released once (${s.budget.started})`)
  t.equal(s.budget.released, s.budget.acquired, `every slot lease released once (${s.budget.acquired})`)
  t.equal(s.apiBudget.active, 0)
  t.equal(s.apiBudget.retries, 0)
  t.equal(s.clock.pending, 0, 'no timer left')
  for (const target of s.upstreams.get('api')!.pool.targets) t.equal(target.inFlight, 0, `nothing in flight on ${target.id}`)
  t.equal(reply.sends, reply.sent ? 1 : 0, 'answered at most once')
}

// --- the tests ---

t.test('the first try succeeds: one try, the response passes, the budget is given back', async (t) => {
  const s = setup()
  const reply = s.proxy()
  t.equal(s.agent.tries.length, 1)
  const [first] = s.agent.tries
  t.equal(first.opts.path, '/things?x=1', 'the client\'s request target, as sent')
  t.equal(stateOf(reply), 'trying')
  t.equal(s.budget.started, 1, 'counted active on its upstream')
  first.respond(200, 'hello')
  await settle()
  t.equal(reply.statusCode, 200)
  t.equal(bodyOf(reply), 'hello')
  t.equal(s.agent.tries.length, 1, 'no other try')
  t.equal(s.budget.acquired, 0, 'no retry slot taken')
  t.same(s.events, [], 'no failover event')
  checkClean(t, s, reply)
})

t.test('a connect failure: retried at once on another target, which answers', async (t) => {
  const s = setup()
  const reply = s.proxy()
  const [first] = s.agent.tries
  first.fail(sysError('ECONNREFUSED', 'connect'))
  await settle()
  t.equal(s.agent.tries.length, 2, 'a second try, with no delay (connectRetryDelay 0)')
  const second = s.agent.tries[1]
  t.not(second.origin, first.origin, 'on the other target')
  t.equal(s.budget.acquired, 1, 'the retry runs on a budget slot')
  t.match(s.events, [{ type: 'retry', upstream: 'api', attempt: 1, reason: 'connect', delayMs: 0, method: 'GET' }])
  second.respond(200, 'from b')
  await settle()
  t.equal(reply.statusCode, 200)
  t.equal(bodyOf(reply), 'from b')
  t.equal(s.ended.length, 2, 'both tries ended')
  t.equal(s.ended[0].aborted, false, 'the refused try is its target\'s failure')
  checkClean(t, s, reply)
})

t.test('a retried status waits the backoff on the clock: nothing starts before it is over', async (t) => {
  // retryDelay 100, random 0.5: the first retry waits 0.5 × 100 = 50 ms
  const s = setup({ failover: { retryDelay: 100 } })
  const reply = s.proxy()
  s.agent.tries[0].respond(503, 'busy')
  await settle()
  t.equal(stateOf(reply), 'waiting')
  t.notOk(reply.sent, 'the 503 is dropped, not sent')
  t.match(s.events, [{ type: 'retry', reason: 503, delayMs: 50 }])
  s.clock.advance(49)
  await settle()
  t.equal(s.agent.tries.length, 1, 'no try before the delay is over')
  s.clock.advance(1)
  await settle()
  t.equal(s.agent.tries.length, 2, 'the retry starts when it is')
  t.not(s.agent.tries[1].origin, s.agent.tries[0].origin)
  s.agent.tries[1].respond(200, 'fine')
  await settle()
  t.equal(reply.statusCode, 200)
  t.equal(bodyOf(reply), 'fine')
  checkClean(t, s, reply)
})

t.test('every try fails with an error: the error code is raised (through reply.send, as Fastify\'s error path)', async (t) => {
  const s = setup()
  const reply = s.proxy()
  s.agent.tries[0].fail(sysError('ECONNREFUSED', 'connect'))
  await settle()
  s.agent.tries[1].fail(sysError('ECONNREFUSED', 'connect'))
  await settle()
  t.equal(s.agent.tries.length, 2, 'no target left untried: no third try')
  t.equal(reply.statusCode, 502)
  t.ok(reply.payload instanceof GatewayError, 'a GatewayError is raised')
  t.equal(errorCode(reply), 'FHG_ERR_UPSTREAM_CONNECT')
  t.match(s.events, [{ type: 'retry' }, { type: 'retries_exhausted', tries: 2, reason: 'connect', why: 'no_target' }])
  checkClean(t, s, reply)
})

t.test('every try fails with a retried status: the last response passes as it is', async (t) => {
  // three targets, maxRetries 2 (default), random 0 (no delay)
  const s = setup({ targets: 3, failover: { random: () => 0 } })
  const reply = s.proxy()
  for (let i = 0; i < 3; i++) {
    s.agent.tries[i].respond(503, `busy ${i}`)
    await settle()
  }
  t.equal(s.agent.tries.length, 3)
  t.equal(new Set(s.agent.tries.map((x) => x.origin)).size, 3, 'three distinct targets')
  t.equal(reply.statusCode, 503)
  t.equal(bodyOf(reply), 'busy 2', 'the last try\'s response, not an error')
  t.match(s.events, [{ type: 'retry' }, { type: 'retry' }, { type: 'retries_exhausted', tries: 3, why: 'max_retries' }])
  checkClean(t, s, reply)
})

t.test('every try fails, static fallback: it answers', async (t) => {
  const s = setup({ failover: { maxRetries: 1, random: () => 0 }, fallbackResponse: { status: 503, body: 'come back later' } })
  const reply = s.proxy()
  s.agent.tries[0].fail(sysError('ECONNRESET'))
  await settle()
  s.agent.tries[1].fail(sysError('ECONNRESET'))
  await settle()
  t.equal(reply.statusCode, 503)
  t.equal(bodyOf(reply), 'come back later')
  t.match(s.events, [{ type: 'retry', reason: 'reset' }, { type: 'retries_exhausted', why: 'max_retries' }, { type: 'fallback_used', fallback: 'static', cause: 'all_tries_failed' }])
  checkClean(t, s, reply)
})

t.test('every try fails, fallback pool: the request goes on there, on its own budget', async (t) => {
  const s = setup({ failover: { fallback: 'backup' }, backup: true })
  const backupBudget = spyBudget(s.failovers.get(s.upstreams.get('backup')!).budget)
  const reply = s.proxy()
  s.agent.tries[0].fail(sysError('ECONNREFUSED', 'connect'))
  await settle()
  s.agent.tries[1].fail(sysError('ECONNREFUSED', 'connect'))
  await settle()
  t.equal(s.agent.tries.length, 3)
  t.equal(s.agent.tries[2].origin, 'http://10.0.9.9:8080', 'the third try goes to the fallback pool')
  t.equal(backupBudget.started, 1, 'counted active on the fallback upstream')
  s.agent.tries[2].respond(200, 'backup says hi')
  await settle()
  t.equal(bodyOf(reply), 'backup says hi')
  t.match(s.events, [{ type: 'retry' }, { type: 'retries_exhausted', why: 'no_target' }, { type: 'fallback_used', fallback: 'backup', cause: 'all_tries_failed' }])
  t.equal(backupBudget.ended, 1, 'the fallback upstream\'s lease released once')
  checkClean(t, s, reply)
})

t.test('a small declared body is held: a retry sends the same bytes again', async (t) => {
  const s = setup()
  const reply = s.proxy('PUT', { 'content-length': '5', 'content-type': 'text/plain' }, Readable.from([Buffer.from('he'), Buffer.from('llo')]))
  await settle()
  t.equal(s.agent.tries.length, 1, 'sent once the body is read')
  t.equal(String(s.agent.tries[0].opts.body), 'hello')
  s.agent.tries[0].fail(sysError('ECONNREFUSED', 'connect'))
  await settle()
  t.equal(s.agent.tries.length, 2)
  t.equal(String(s.agent.tries[1].opts.body), 'hello', 'the retry replays the held body')
  s.agent.tries[1].respond(204, '')
  await settle()
  t.equal(reply.statusCode, 204)
  checkClean(t, s, reply)
})

t.test('a streamed body (no declared length) is sent once: even a connect failure is not retried', async (t) => {
  const s = setup()
  const reply = s.proxy('PUT', {}, Readable.from([Buffer.from('stream')]))
  t.equal(s.agent.tries.length, 1, 'sent at once, not held')
  s.agent.tries[0].fail(sysError('ECONNREFUSED', 'connect'))
  await settle()
  t.equal(s.agent.tries.length, 1)
  t.equal(reply.statusCode, 502)
  t.equal(errorCode(reply), 'FHG_ERR_UPSTREAM_CONNECT')
  t.match(s.events, [{ type: 'retries_exhausted', why: 'body' }])
  checkClean(t, s, reply)
})

t.test('no eligible target: every circuit open answers 503 CIRCUIT_OPEN without a try', async (t) => {
  const s = setup()
  const pool = s.upstreams.get('api')!.pool
  for (const target of pool.targets) { target.circuit = 'open'; pool.touch(target) }
  const reply = s.proxy()
  await settle()
  t.equal(s.agent.tries.length, 0)
  t.equal(reply.statusCode, 503)
  t.equal(errorCode(reply), 'FHG_ERR_CIRCUIT_OPEN')
  checkClean(t, s, reply)
})

t.test('hedging: after hedgeDelay a second try starts; the first response wins, the loser is aborted and its slot given back', async (t) => {
  t.test('the hedge answers first', async (t) => {
    const s = setup({ failover: { hedge: { delay: 50 } } })
    const reply = s.proxy()
    s.clock.advance(49)
    t.equal(s.agent.tries.length, 1, 'no hedge before the delay')
    s.clock.advance(1)
    t.equal(s.agent.tries.length, 2, 'the hedge starts at the delay')
    const [first, hedge] = s.agent.tries
    t.not(hedge.origin, first.origin, 'on another target')
    t.equal(s.budget.acquired, 1, 'on a budget slot')
    hedge.respond(200, 'hedge wins')
    await settle()
    t.equal(first.abortedWith?.message, 'hedged request lost the race', 'the first try is aborted')
    t.equal(bodyOf(reply), 'hedge wins')
    t.equal(s.ended.find((r) => r.statusCode === 0)?.aborted, true, 'the loser is not its target\'s failure')
    t.same(s.events, [], 'a hedge is no retry')
    checkClean(t, s, reply)
  })

  t.test('the first try answers first: the hedge is aborted and its slot released at once', async (t) => {
    const s = setup({ failover: { hedge: { delay: 50 } } })
    const reply = s.proxy()
    s.clock.advance(50)
    const [first, hedge] = s.agent.tries
    t.equal(s.apiBudget.retries, 1, 'the hedge holds a slot')
    first.respond(200, 'first wins')
    await settle()
    t.equal(hedge.abortedWith?.message, 'hedged request lost the race')
    t.equal(bodyOf(reply), 'first wins')
    t.equal(s.budget.released, 1, 'the hedge\'s slot is given back')
    checkClean(t, s, reply)
  })

  t.test('the first try answered before the delay: no hedge', async (t) => {
    const s = setup({ failover: { hedge: { delay: 50 } } })
    const reply = s.proxy()
    s.agent.tries[0].respond(200)
    await settle()
    s.clock.advance(100)
    t.equal(s.agent.tries.length, 1)
    checkClean(t, s, reply)
  })

  t.test('POST is not hedged', async (t) => {
    const s = setup({ failover: { hedge: { delay: 50 } } })
    const reply = s.proxy('POST')
    s.clock.advance(100)
    t.equal(s.agent.tries.length, 1)
    s.agent.tries[0].respond(201, 'made')
    await settle()
    t.equal(reply.statusCode, 201)
    checkClean(t, s, reply)
  })
})

t.test('perTryTimeout fires on the clock: each try times out at exactly its deadline, then 504', async (t) => {
  const s = setup({ failover: { perTryTimeout: 100, maxRetries: 1, random: () => 0 } })
  const reply = s.proxy()
  t.equal(s.agent.tries[0].opts.headersTimeout, 100, 'undici\'s headers timeout is the per-try timeout too (its backstop)')
  s.clock.advance(99)
  await settle()
  t.equal(s.agent.tries[0].abortedWith, undefined, 'not before its deadline')
  s.clock.advance(1)
  await settle()
  t.equal((s.agent.tries[0].abortedWith as { code?: string } | undefined)?.code, 'UND_ERR_HEADERS_TIMEOUT', 'the first try expires')
  t.equal(s.agent.tries.length, 2, 'and is retried (a timeout is in retryOn)')
  t.equal(s.ended[0].aborted, false, 'an expired try is its target\'s failure')
  s.clock.advance(99)
  await settle()
  t.notOk(reply.sent)
  s.clock.advance(1)
  await settle()
  t.equal(reply.statusCode, 504)
  t.equal(errorCode(reply), 'FHG_ERR_UPSTREAM_TIMEOUT')
  t.match(s.events, [{ type: 'retry', reason: 'timeout' }, { type: 'retries_exhausted', reason: 'timeout', why: 'max_retries' }])
  checkClean(t, s, reply)
})

t.test('the whole-request timeout fires on the clock: the try in flight is aborted, 504', async (t) => {
  const s = setup({ targets: 1, failover: { timeout: 300 } })
  const reply = s.proxy()
  s.clock.advance(299)
  await settle()
  t.notOk(reply.sent)
  t.equal(s.agent.tries[0].abortedWith, undefined)
  s.clock.advance(1)
  await settle()
  t.equal(s.agent.tries[0].abortedWith?.name, 'TimeoutError')
  t.equal(reply.statusCode, 504)
  t.equal(errorCode(reply), 'FHG_ERR_UPSTREAM_TIMEOUT')
  t.match(s.events, [{ type: 'retries_exhausted', reason: 'timeout', why: 'deadline' }])
  t.equal(s.agent.tries.length, 1, 'no retry past the deadline')
  checkClean(t, s, reply)
})

t.test('the whole-request timeout cuts a retry short: the retry in flight is aborted when it passes, 504', async (t) => {
  // timeout 300, retryDelay 400 (random 0.5: a 200 ms wait): a 503 at 50 waits until 250, within the deadline
  const s = setup({ failover: { timeout: 300, retryDelay: 400 } })
  const reply = s.proxy()
  s.clock.advance(50)
  s.agent.tries[0].respond(503)
  await settle()
  t.equal(stateOf(reply), 'waiting')
  s.clock.advance(199)
  await settle()
  t.equal(s.agent.tries.length, 1)
  s.clock.advance(1)
  await settle()
  t.equal(s.agent.tries.length, 2, 'the retry started at 250')
  t.equal(s.agent.tries[1].opts.headersTimeout, 50, 'its timeout is what is left of the deadline')
  s.clock.advance(49)
  await settle()
  t.notOk(reply.sent)
  s.clock.advance(1)
  await settle()
  t.equal(reply.statusCode, 504, 'the deadline passed at 300 with the retry in flight')
  t.equal(errorCode(reply), 'FHG_ERR_UPSTREAM_TIMEOUT')
  t.equal(s.agent.tries.length, 2)
  checkClean(t, s, reply)
})

t.test('the client leaves mid-run: its try is aborted, no retry, nothing blamed, nothing sent', async (t) => {
  const s = setup()
  const reply = s.proxy()
  reply.clientLeaves()
  await settle()
  t.equal(s.agent.tries[0].abortedWith?.message, 'client closed the connection')
  t.equal(s.agent.tries.length, 1, 'no retry')
  t.equal(s.ended[0].aborted, true, 'the aborted try says nothing about its target')
  t.notOk(reply.sent)
  t.same(s.events, [])
  checkClean(t, s, reply)
})

t.test('the client leaves during a backoff: the wait is cancelled, nothing more starts', async (t) => {
  const s = setup({ failover: { retryDelay: 100 } })
  const reply = s.proxy()
  s.agent.tries[0].respond(503)
  await settle()
  t.equal(stateOf(reply), 'waiting')
  reply.clientLeaves()
  s.clock.advance(1000)
  await settle()
  t.equal(s.agent.tries.length, 1, 'the retry never starts')
  checkClean(t, s, reply)
})

t.test('a client fault (it left mid-body): 400, no retry, the breaker does not count it', async (t) => {
  const s = setup({ breaker: { consecutiveFailures: 1 } })
  const reply = s.proxy('PUT')
  reply.request.raw.complete = false
  reply.request.raw.destroyed = true
  s.agent.tries[0].fail(sysError('ECONNRESET'))
  await settle()
  t.equal(s.agent.tries.length, 1, 'no retry')
  t.equal(reply.statusCode, 400)
  t.equal(errorCode(reply), 'FHG_ERR_BAD_REQUEST')
  t.equal(s.ended[0].aborted, true, 'observers (passive health) are told it says nothing of the target')
  t.same(s.upstreams.get('api')!.pool.targets.map((x) => x.circuit), ['closed', 'closed'], 'no circuit opened')
  t.same(s.events, [])
  checkClean(t, s, reply)
})

t.test('the same reset from the target (client whole): retried, and the breaker counts it', async (t) => {
  const s = setup({ breaker: { consecutiveFailures: 1 } })
  const reply = s.proxy('PUT')
  const first = s.agent.tries[0]
  first.fail(sysError('ECONNRESET'))
  await settle()
  s.clock.advance(12.5) // the backoff: 0.5 × retryDelay 25
  t.equal(s.agent.tries.length, 2, 'retried')
  t.equal(s.upstreams.get('api')!.pool.targets.find((x) => x.origin === first.origin)?.circuit, 'open', 'the reset target\'s circuit opened')
  s.agent.tries[1].respond(200)
  await settle()
  t.equal(reply.statusCode, 200)
  checkClean(t, s, reply)
})
