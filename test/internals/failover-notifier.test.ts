import t from 'tap'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebhookNotifier } from '../../lib/failover/notifier-webhook.js'
import { FunctionNotifier, LogNotifier, Notifications, type Notifier } from '../../lib/failover/notifier.js'
import type { FailoverEvent } from '../../lib/failover/events.js'
import { until } from '../helpers/poll.js'

function retryEvent (i: number): FailoverEvent {
  return { type: 'retry', timestamp: 1000 + i, upstream: 'users', target: `t-${i}`, attempt: 1, reason: 503, delayMs: 0, method: 'GET' }
}

async function listen (handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): Promise<{ server: Server, url: string }> {
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => handler(req, res, body))
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as AddressInfo
  return { server, url: `http://127.0.0.1:${port}/hook` }
}

t.test('a hanging webhook: emit returns at once, the queue stays bounded, nothing rejects', async (t) => {
  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown): void => { unhandled.push(err) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  const received: string[] = []
  let firstAt = 0
  const { server, url } = await listen((_req, _res, body) => { if (received.length === 0) firstAt = performance.now(); received.push(body) }) // never answers
  t.teardown(() => { server.closeAllConnections(); server.close() })

  const errors: unknown[] = []
  const webhook = new WebhookNotifier({ url, timeout: 1000, maxQueue: 50, concurrency: 2, onError: (err) => errors.push(err) })
  const hub = new Notifications([webhook])

  const started = process.hrtime.bigint()
  for (let i = 0; i < 5000; i++) hub.emit(retryEvent(i))
  const emitMs = Number(process.hrtime.bigint() - started) / 1e6
  t.ok(emitMs < 1000, `5000 emits took ${emitMs.toFixed(1)} ms (generous bound)`)
  t.equal(webhook.queued, 50, 'queue bounded at maxQueue')
  t.equal(webhook.dropped, 4950, 'oldest events dropped and counted')

  await until(() => received.length >= 2, 5000, 'two POSTs to arrive')
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.equal(webhook.active, 2, 'at most `concurrency` POSTs in flight')
  // a third POST may start only once one of the first two timed out (1 s): a machine that stalled that long proves nothing
  if (performance.now() - firstAt < 1000 - 50) t.equal(received.length, 2, 'the hanging server sees no third POST before a timeout')
  else t.comment(`stalled ${(performance.now() - firstAt).toFixed(0)} ms: a POST may have timed out already`)
  t.same(received.slice(0, 2).map((b) => JSON.parse(b)), [retryEvent(4950), retryEvent(4951)], 'the oldest kept events go first')

  await until(() => webhook.failed >= 2, 5000, 'the first POSTs to time out')
  await until(() => received.length >= 4, 5000, 'the next POSTs to start')
  t.ok(errors.length >= 2, 'timeouts reported to onError')
  t.match(String(errors[0]), /timed out/)

  for (let i = 0; i < 100; i++) hub.emit(retryEvent(10_000 + i))
  t.ok(webhook.queued <= 50, 'still bounded while POSTs hang')

  await hub.close()
  t.equal(webhook.active, 0, 'close aborts POSTs in flight')
  t.equal(webhook.queued, 0)
  hub.emit(retryEvent(0))
  t.equal(webhook.queued, 0, 'a closed webhook queues nothing')
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(unhandled, [], 'no unhandled rejection')
})

t.test('a webhook posts JSON and counts answers', async (t) => {
  const bodies: Array<{ headers: IncomingMessage['headers'], body: unknown }> = []
  let status = 204
  const { server, url } = await listen((req, res, body) => {
    bodies.push({ headers: req.headers, body: JSON.parse(body) })
    res.statusCode = status
    res.end()
  })
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const errors: unknown[] = []
  const webhook = new WebhookNotifier({ url, headers: { authorization: 'Bearer x' }, onError: (err) => errors.push(err) })
  const opened: FailoverEvent = { type: 'circuit_opened', timestamp: 1, upstream: 'users', target: 'a', cause: 'error_ratio', openMs: 5000, trips: 1 }
  webhook.notify(opened)
  webhook.notify(retryEvent(1))
  await webhook.idle()
  t.equal(webhook.sent, 2)
  // two POSTs run at once: arrival order is not fixed
  const posted = bodies.map((b) => b.body as FailoverEvent).sort((x, y) => x.timestamp - y.timestamp)
  t.same(posted, [opened, retryEvent(1)], 'each event posted as JSON')
  t.match(bodies[0].headers, { 'content-type': 'application/json', authorization: 'Bearer x' })

  status = 500
  webhook.notify(retryEvent(2))
  await webhook.idle()
  t.equal(webhook.failed, 1, 'a non-2xx answer is a failure')
  t.match(String(errors[0]), /500/)
  await webhook.close()
})

t.test('a webhook to a closed port fails quietly', async (t) => {
  const { server, url } = await listen(() => {})
  await new Promise((resolve) => server.close(resolve))
  const webhook = new WebhookNotifier({ url, timeout: 1000 })
  webhook.notify(retryEvent(1))
  await webhook.idle()
  t.equal(webhook.failed, 1)
  t.equal(webhook.sent, 0)
})

t.test('log notifier: warn for what an operator acts on, info for the rest', async (t) => {
  const lines: Array<[string, object, string | undefined]> = []
  const logger = {
    info: (obj: object, msg?: string) => { lines.push(['info', obj, msg]) },
    warn: (obj: object, msg?: string) => { lines.push(['warn', obj, msg]) },
  }
  const log = new LogNotifier(logger)
  log.notify(retryEvent(1))
  log.notify({ type: 'circuit_opened', timestamp: 1, upstream: 'users', target: 'a', cause: 'consecutive_failures', openMs: 5000, trips: 1 })
  log.notify({ type: 'circuit_closed', timestamp: 2, upstream: 'users', target: 'a' })
  log.notify({ type: 'fallback_used', timestamp: 3, upstream: 'users', fallback: 'users-backup', cause: 'no_eligible_target' })
  log.notify({ type: 'retries_exhausted', timestamp: 4, upstream: 'users', tries: 3, reason: 'connect', why: 'max_retries', method: 'GET' })
  t.same(lines.map((l) => l[0]), ['info', 'warn', 'info', 'warn', 'warn'])
  t.match(lines[1], ['warn', { failover: { type: 'circuit_opened', target: 'a' } }, 'failover circuit_opened upstream=users'])

  const hub = Notifications.from(undefined, logger)
  hub.emit(retryEvent(2))
  t.equal(lines.length, 6, 'with no notifier configured, events are logged')
})

t.test('function notifier and the hub never throw', async (t) => {
  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown): void => { unhandled.push(err) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  const seen: string[] = []
  const errors: unknown[] = []
  const throwing: Notifier = { notify: () => { throw new Error('bad notifier') } }
  const hub = new Notifications([
    throwing,
    new FunctionNotifier(() => { throw new Error('sync') }, (e) => errors.push(e)),
    new FunctionNotifier(async () => { throw new Error('async') }, (e) => errors.push(e)),
    new FunctionNotifier((e) => { seen.push(e.type) }),
  ])
  t.doesNotThrow(() => hub.emit(retryEvent(1)))
  t.same(seen, ['retry'], 'later notifiers still get the event')
  await new Promise((resolve) => setTimeout(resolve, 20))
  t.same(errors.map((e) => (e as Error).message), ['sync', 'async'])
  t.same(unhandled, [])
})
