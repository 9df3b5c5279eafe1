// lib/proxy/passthrough.ts: what of an upstream's 103 and trailers reaches the client's response.
import t from 'tap'
import { passEarlyHints, passTrailers, type ClientResponse } from '../../lib/proxy/passthrough.js'

function response (state: Partial<Pick<ClientResponse, 'headersSent' | 'writableEnded' | 'destroyed'>> = {}): ClientResponse & { hints: unknown[], trailers: unknown[] } {
  const hints: unknown[] = []
  const trailers: unknown[] = []
  return {
    headersSent: false,
    writableEnded: false,
    destroyed: false,
    ...state,
    hints,
    trailers,
    writeEarlyHints (h: Record<string, string | string[]>) { hints.push(h) },
    addTrailers (tr: unknown) { trailers.push(tr) },
  } as unknown as ClientResponse & { hints: unknown[], trailers: unknown[] }
}

const raw = (...pairs: string[]): Buffer[] => pairs.map((p) => Buffer.from(p))

t.test('a 103 with Link goes to the client, names lower-cased and repeated ones gathered', async (t) => {
  const res = response()
  passEarlyHints(res, 103, raw('Link', '</a.css>; rel=preload', 'link', '</b.js>; rel=preload', 'X-Extra', '1'))
  t.same(res.hints, [{ link: ['</a.css>; rel=preload', '</b.js>; rel=preload'], 'x-extra': '1' }])
})

t.test('other 1xx, a 103 without Link, or a head already sent: nothing', async (t) => {
  const res = response()
  passEarlyHints(res, 102, raw('link', '</a.css>'))
  passEarlyHints(res, 103, raw('x-only', '1'))
  passEarlyHints(response({ headersSent: true }), 103, raw('link', '</a.css>'))
  passEarlyHints(undefined, 103, raw('link', '</a.css>'))
  t.same(res.hints, [])
})

t.test('trailers: added before the end (HTTP/1.1 list or HTTP/2 object); none, or an ended response, adds nothing', async (t) => {
  const res = response()
  passTrailers(res, raw('X-Checksum', 'abc'))
  passTrailers(res, { 'x-h2': '1' })
  passTrailers(res, [])
  passTrailers(res, null)
  t.same(res.trailers, [{ 'x-checksum': 'abc' }, { 'x-h2': '1' }])
  const ended = response({ writableEnded: true })
  passTrailers(ended, raw('x', '1'))
  t.same(ended.trailers, [])
})
