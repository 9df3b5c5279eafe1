import t from 'tap'
import http from 'node:http'
import { once } from 'node:events'
import Fastify from 'fastify'
import { gateway } from '../plugins/gateway.js'
import { startUpstream } from './helpers/upstream.js'
import { get } from './helpers/gateway.js'

t.test('a webhook notifier configured in the file receives failover events', async (t) => {
  const events: Array<{ type: string, upstream: string }> = []
  const hook = http.createServer((req, res) => {
    let body = ''
    req.on('data', (c) => { body += c })
    req.on('end', () => { events.push(JSON.parse(body)); res.end() })
  })
  hook.listen(0, '127.0.0.1')
  await once(hook, 'listening')
  t.teardown(() => hook.close())
  const sick = await startUpstream({ id: 'sick', status: 503 })
  const good = await startUpstream({ id: 'good' })
  t.teardown(async () => { await sick.kill(); await good.kill() })

  const app = Fastify()
  await app.register(gateway, {
    upstreams: { u: { strategy: 'round_robin', targets: [{ id: 'sick', url: sick.url }, { id: 'good', url: good.url }] } },
    routes: [{ path: '/', upstream: 'u' }],
    notifications: [{ type: 'webhook', url: `http://127.0.0.1:${(hook.address() as { port: number }).port}/events`, timeout: '1s' }],
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  for (let i = 0; i < 4; i++) t.equal((await get(`${url}/x`)).body.id, 'good', 'a 503 is retried on the other target')
  const deadline = Date.now() + 5000
  while (events.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  t.ok(events.some((e) => e.type === 'retry' && e.upstream === 'u'), 'the webhook got a retry event')
})
