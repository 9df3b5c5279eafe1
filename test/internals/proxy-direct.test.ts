// The direct path of a try (lib/proxy/direct.ts): the headers it sends, and the ResponseSink's handling of a
// response's head and body (read whole, streamed with backpressure, dropped, cut), driven by hand as undici would.
import t from 'tap'
import { errors } from 'undici'
import { requestHeaders, ResponseSink, type SinkOwner } from '../../lib/proxy/direct.js'

const raw = (pairs: Record<string, string>): Buffer[] => Object.entries(pairs).flatMap(([k, v]) => [Buffer.from(k), Buffer.from(v)])

interface Fake {
  reply: any
  owner: SinkOwner & { responded: number, errors: Error[] }
  sink: ResponseSink
  aborted: Error[]
  resumed: number
}

function fake (opts: { passes?: boolean, aborted?: boolean, complete?: boolean, badCode?: boolean, take?: (s: ResponseSink) => void } = {}): Fake {
  const reply: any = {
    hdrs: {} as Record<string, unknown>,
    status: 0,
    request: { raw: { aborted: opts.aborted === true, complete: opts.complete !== false, httpVersionMajor: 1 } },
    header (k: string, v: unknown) { reply.hdrs[k] = v; return reply },
    code (s: number) { if (opts.badCode === true) throw new Error('FST_ERR_BAD_STATUS_CODE'); reply.status = s; return reply },
  }
  const owner = {
    responded: 0,
    errors: [] as Error[],
    passes: () => opts.passes !== false,
    respond (_reply: unknown, res: { stream: ResponseSink }) { owner.responded++; opts.take?.(res.stream) },
    replyFromError (err: Error) { owner.errors.push(err) },
  }
  const f: Fake = { reply, owner, sink: new ResponseSink(reply, owner), aborted: [], resumed: 0 }
  f.sink.onConnect((err?: Error) => { f.aborted.push(err ?? new Error('aborted')); f.sink.onError(err ?? new Error('aborted')) })
  return f
}

t.test('requestHeaders: the client\'s end-to-end headers, the target\'s Host, the forwarding headers', async (t) => {
  const src = { host: 'gw.example', connection: 'keep-alive, x-drop', 'x-drop': '1', 'keep-alive': 'timeout=5', te: 'trailers', expect: '100-continue', accept: 'text/plain', 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6' }
  const socket = { remoteAddress: '127.0.0.9', localPort: 8080 }
  const h = requestHeaders(src, { socket }, 'http://127.0.0.1:4000', false, undefined, undefined)
  t.equal(h.host, '127.0.0.1:4000', 'Host: the target\'s')
  t.equal(h.accept, 'text/plain')
  for (const k of ['connection', 'x-drop', 'keep-alive', 'te', 'expect', 'forwarded']) t.equal(h[k], undefined, `${k} not sent`)
  t.equal(h['x-forwarded-for'], '127.0.0.9', 'an untrusted peer\'s X-Forwarded-For replaced')
  t.equal(h['x-forwarded-host'], 'gw.example')
  t.equal(h['x-forwarded-port'], '8080')
  t.equal(h['x-real-ip'], '127.0.0.9')
  t.equal(src.connection, 'keep-alive, x-drop', 'the client\'s headers are untouched')
  t.equal(src['x-forwarded-for'], '6.6.6.6')

  const kept = requestHeaders(src, { socket }, 'http://127.0.0.1:4000', true, () => true, { buf: Buffer.from('abc'), contentType: 'text/csv' })
  t.equal(kept.host, 'gw.example', 'preserveHost: the client\'s Host')
  t.equal(kept['x-forwarded-for'], '6.6.6.6, 127.0.0.9', 'a trusted peer\'s chain extended')
  t.equal(kept['content-length'], '3', 'a held body: its own length')
  t.equal(kept['content-type'], 'text/csv')

  const h2 = requestHeaders({ ':method': 'GET', ':authority': 'gw.example', ':path': '/x', accept: '*/*' }, { httpVersionMajor: 2, socket }, 'https://10.0.0.1', false, undefined, undefined)
  t.same(Object.keys(h2).filter((k) => k.startsWith(':')), [], 'HTTP/2 pseudo-headers not sent')
  t.equal(h2.host, '10.0.0.1', 'the target\'s Host (no default port)')
  t.equal(h2['x-forwarded-host'], 'gw.example', ':authority as the client\'s host')
})

t.test('a small body read whole: one buffer when the response completes', async (t) => {
  let whole: Promise<Buffer> | undefined
  const f = fake({ take: (s) => { whole = s.bytes() } })
  f.sink.onHeaders(200, raw({ 'content-type': 'text/plain', 'content-length': '6', connection: 'keep-alive', 'set-cookie': 'a=1' }), () => {})
  t.equal(f.reply.status, 200)
  t.same(f.reply.hdrs, { 'content-type': 'text/plain', 'content-length': '6', 'set-cookie': 'a=1' }, 'end-to-end headers only')
  f.sink.onData(Buffer.from('abc'))
  f.sink.onData(Buffer.from('def'))
  f.sink.onComplete(null)
  t.equal((await whole!).toString(), 'abcdef')
})

t.test('repeated headers arrive as a list; a client whose body is unread gets Connection: close', async (t) => {
  const f = fake({ complete: false, take: (s) => { void s.dump() } })
  f.sink.onHeaders(201, [Buffer.from('set-cookie'), Buffer.from('a=1'), Buffer.from('set-cookie'), Buffer.from('b=2')], () => {})
  t.same(f.reply.hdrs['set-cookie'], ['a=1', 'b=2'])
  t.equal(f.reply.hdrs.connection, 'close')
})

t.test('a body that fails while read whole rejects; one that streams errors its stream', async (t) => {
  let whole: Promise<Buffer> | undefined
  const a = fake({ take: (s) => { whole = s.bytes() } })
  a.sink.onHeaders(200, raw({ 'content-length': '10' }), () => {})
  a.sink.onData(Buffer.from('abc'))
  a.sink.onError(new Error('reset'))
  await t.rejects(whole!, /reset/)

  let stream: NodeJS.ReadableStream | undefined
  const b = fake({ take: (s) => { stream = s.readable() } })
  b.sink.onHeaders(200, raw({}), () => {})
  const failed = new Promise<Error>((resolve) => stream!.once('error', resolve))
  b.sink.onError(new Error('cut'))
  t.match((await failed).message, 'cut')
})

t.test('a streamed body: chunks in order, undici paused past the high-water mark and resumed as the client reads', async (t) => {
  let stream: import('node:stream').Readable | undefined
  const f = fake({ take: (s) => { stream = s.readable() as import('node:stream').Readable } })
  let resumes = 0
  f.sink.onHeaders(200, raw({ 'content-type': 'text/event-stream' }), () => { resumes++ })
  const big = Buffer.alloc(64 * 1024, 1)
  t.equal(f.sink.onData(big), false, 'past the high-water mark: pause')
  const got: Buffer[] = []
  stream!.on('data', (c: Buffer) => got.push(c))
  await new Promise((resolve) => setImmediate(resolve))
  t.ok(resumes > 0, 'resumed once read')
  f.sink.onData(Buffer.from('tail'))
  f.sink.onComplete(null)
  await new Promise((resolve) => stream!.once('end', resolve))
  t.equal(Buffer.concat(got).length, big.length + 4)
  t.same(f.aborted, [], 'a body read to its end does not abort the try')
})

t.test('a streamed body destroyed early (the client left) aborts the try', async (t) => {
  let stream: import('node:stream').Readable | undefined
  const f = fake({ take: (s) => { stream = s.readable() as import('node:stream').Readable } })
  f.sink.onHeaders(200, raw({}), () => {})
  f.sink.onData(Buffer.from('x'))
  stream!.destroy()
  t.equal(f.aborted.length, 1, 'the try is aborted')
  t.ok(f.aborted[0] instanceof errors.RequestAbortedError)
})

t.test('a dropped response: its rest is read up to 128 KiB to keep the connection, then cut', async (t) => {
  const small = fake({ take: (s) => { void s.dump() } })
  small.sink.onHeaders(503, raw({}), () => {})
  small.sink.onData(Buffer.alloc(1024))
  small.sink.onComplete(null)
  t.same(small.aborted, [], 'a small rest is read')

  const big = fake({ take: (s) => { void s.dump() } })
  big.sink.onHeaders(503, raw({}), () => {})
  for (let i = 0; i < 3; i++) big.sink.onData(Buffer.alloc(64 * 1024))
  t.equal(big.aborted.length, 1, 'cut past 128 KiB')
})

t.test('a response the client does not get: no header of it reaches the reply', async (t) => {
  const f = fake({ passes: false, take: (s) => { void s.dump() } })
  f.sink.onHeaders(502, raw({ 'x-upstream': '1' }), () => {})
  t.same(f.reply.hdrs, {})
  t.equal(f.reply.status, 0)
  t.equal(f.owner.responded, 1, 'the owner still decides (retry)')
})

t.test('a status Fastify refuses: the try failed, its body dropped', async (t) => {
  const f = fake({ badCode: true })
  f.sink.onHeaders(999, raw({ 'content-length': '2' }), () => {})
  t.equal(f.owner.errors.length, 1)
  t.match(f.owner.errors[0].message, /status 999/)
  t.equal(f.owner.responded, 0)
  t.equal(f.sink.onData(Buffer.from('ok')), true)
})

t.test('the client left before the head: the try is cut, nothing is answered', async (t) => {
  const f = fake({ aborted: true })
  f.sink.onHeaders(200, raw({}), () => {})
  t.equal(f.owner.responded, 0)
  t.equal(f.aborted.length, 1)
})

t.test('1xx heads are not the answer', async (t) => {
  const f = fake()
  t.equal(f.sink.onHeaders(103, raw({ link: '</a.css>; rel=preload' }), () => {}), true)
  t.same(f.reply.hdrs, {})
  t.equal(f.owner.responded, 0)
})
