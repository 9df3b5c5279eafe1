// Issue 11, point 7: secrets never print, state files are private. A gateway node with a Redis URL that
// carries a password, an admin token and a webhook notifier with an authorization header, its pino output
// captured; its admin views, its config errors and its snapshot (default location) must show none of them.
import t from 'tap'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { defaultStateDir, writeFileAtomic } from '../lib/cluster/snapshot.js'
import { redactConfig, redactText, validateConfig } from '../lib/config/index.js'
import { startNode, type StartedNode } from '../plugins/gateway.js'
import { get } from './helpers/gateway.js'
import { startRedis, type RedisProcess } from './helpers/redis.js'

const REDIS_PW = 's3cret-redis-pw'
const TOKEN = 'admin-token-never-printed'
const HOOK = 'hook-secret-header-value'
const SECRETS = [REDIS_PW, TOKEN, HOOK]
const dir = mkdtempSync(join(tmpdir(), 'fhg-secrets-'))

let redis: RedisProcess
t.before(async () => { redis = await startRedis() })
t.teardown(async () => { await redis.stop() })

const leaks = (text: string): string[] => SECRETS.filter((s) => text.includes(s))

t.test('a node never prints its secrets: logs, admin views, config errors, snapshot', async (t) => {
  const state = join(dir, 'state')
  // a state dir someone left readable by others: made private before the snapshot goes in
  mkdirSync(join(state, 'fastify-ha-gateway'), { recursive: true, mode: 0o755 })
  const saved = process.env.XDG_STATE_HOME
  process.env.XDG_STATE_HOME = state
  t.teardown(() => { if (saved === undefined) delete process.env.XDG_STATE_HOME; else process.env.XDG_STATE_HOME = saved })

  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, cb) { lines.push(String(chunk)); cb() } })
  const config = validateConfig({
    node: { id: 'gw-secret', host: '127.0.0.1', port: 0 },
    // Redis without requirepass answers AUTH with an error that ioredis only warns about: the node runs
    cluster: { name: `sec${process.pid}`, redis: `redis://:${REDIS_PW}@127.0.0.1:${redis.port}`, heartbeatInterval: '300ms' },
    upstreams: { svc: { targets: [{ id: 'svc-1', url: 'http://127.0.0.1:9' }] } },
    routes: [{ path: '/api', upstream: 'svc' }],
    admin: { token: TOKEN },
    notifications: [{ type: 'webhook', url: 'http://127.0.0.1:9/hook', headers: { authorization: `Bearer ${HOOK}` } }],
  })
  let node: StartedNode | undefined
  try {
    node = await startNode(config, { logger: { level: 'debug', stream } })
    const AUTH = { authorization: `Bearer ${TOKEN}` }
    const admin = `${node.address}/gateway`

    // the default snapshot: in the private state dir, 0600, written once the store's version applied
    const file = join(defaultStateDir(), `sec${process.pid}-gw-secret.json`)
    t.equal(defaultStateDir(), join(state, 'fastify-ha-gateway'), 'default: $XDG_STATE_HOME/fastify-ha-gateway')
    const t0 = Date.now()
    while (!readdirSync(join(state, 'fastify-ha-gateway')).includes(`sec${process.pid}-gw-secret.json`)) {
      if (Date.now() - t0 > 15_000) throw new Error('no snapshot written')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    t.equal(statSync(file).mode & 0o777, 0o600, 'snapshot file 0600')
    t.equal(statSync(join(state, 'fastify-ha-gateway')).mode & 0o777, 0o700, 'its directory 0700 (was 0755)')
    t.same(leaks(readFileSync(file, 'utf8')), [], 'the snapshot holds no secret')

    // admin views
    for (const path of ['/status', '/cluster']) {
      const res = await get(`${admin}${path}`, { headers: AUTH })
      t.equal(res.status, 200)
      t.same(leaks(res.text), [], `${path} shows no secret`)
    }
    // a PUT whose error would quote a credential
    const cur = (await get(`${admin}/config`, { headers: AUTH })).body
    const bad = { ...cur.config, upstreams: { svc: { targets: [{ id: 'svc-1', url: `http://user:${REDIS_PW}@127.0.0.1:9` }] } } }
    const res = await get(`${admin}/config`, {
      method: 'PUT', headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(cur.version) }, body: JSON.stringify(bad),
    })
    t.equal(res.status, 400, 'refused')
    t.match(res.text, /user:\*\*\*@127\.0\.0\.1/, 'the URL is quoted with its password hidden')
    t.same(leaks(res.text), [], 'the error shows no secret')
    const notJson = await get(`${admin}/config`, {
      method: 'PUT', headers: { ...AUTH, 'content-type': 'application/json', 'if-match': String(cur.version) }, body: `{"token": "${TOKEN}"`,
    })
    t.equal(notJson.status, 400, 'a body that is not JSON: 400')
    t.same(leaks(notJson.text), [], 'the parser error does not quote the body')

    // Redis down and back: the cluster logs its errors
    await redis.kill()
    await new Promise((resolve) => setTimeout(resolve, 800))
    await redis.restart()
  } finally {
    await node?.close()
  }
  const log = lines.join('')
  t.ok(lines.length > 5, `the node logged (${lines.length} lines)`)
  t.match(log, /cluster redis error|redis/i, 'the outage was logged')
  t.same(leaks(log), [], 'no log line holds a secret')
})

t.test('config errors and the redaction helper', async (t) => {
  const messageOf = (raw: unknown): string => { try { validateConfig(raw); return '' } catch (err) { return (err as Error).message } }
  let m = messageOf({ cluster: { redis: `http://:${REDIS_PW}@127.0.0.1:1` } })
  t.match(m, /cluster\.redis/, 'the bad key is named')
  t.same(leaks(m), [], 'a bad Redis URL is not quoted with its password')
  m = messageOf({ admin: { token: 12345678901234, prefix: '/gw' } })
  t.match(m, /admin\.token/)
  t.notMatch(m, /12345678901234/, 'a token of the wrong type is not quoted')
  m = messageOf({ cluster: { redis: { sentinels: [{ host: 'h', port: 1 }], name: 'm', sentinelPassword: 42, password: REDIS_PW } } })
  t.same(leaks(m), [], 'Sentinel passwords are not quoted')

  t.equal(redactText(`connect to redis://:${REDIS_PW}@h:6379 failed`), 'connect to redis://:***@h:6379 failed')
  t.equal(redactText('rediss://user:pw@h/0 and https://tok@example.com/x'), 'rediss://user:***@h/0 and https://***@example.com/x')
  const shown = JSON.stringify(redactConfig({
    cluster: { redis: { sentinels: [{ host: 'h', port: 1 }], name: 'm', password: REDIS_PW, sentinelPassword: HOOK } },
    admin: { token: TOKEN },
    notifications: [{ type: 'webhook', url: 'http://h/x', headers: { authorization: `Bearer ${HOOK}`, 'x-api': 'k' } }],
  }))
  t.same(leaks(shown), [], 'redactConfig hides passwords, tokens and header values')
  t.match(shown, /"name":"m"/, 'and keeps the rest')
})

t.test('snapshot writes are atomic and private', async (t) => {
  const file = join(dir, 'atomic', 'snap.json')
  const big = (i: number): string => JSON.stringify({ version: i, config: { routes: Array.from({ length: 5000 }, (_, j) => ({ path: `/r${j}`, upstream: `u${i}` })) } })
  await writeFileAtomic(file, big(0))
  let reads = 0
  let writing = true
  const reader = (async () => {
    while (writing) {
      const text = await readFile(file, 'utf8')
      JSON.parse(text) // throws on a partial file
      reads++
    }
  })()
  const writes = Array.from({ length: 40 }, (_, i) => writeFileAtomic(file, big(i + 1)))
  await Promise.all(writes)
  writing = false
  await reader
  t.ok(reads > 0, `${reads} reads during 40 concurrent writes, every one a whole document`)
  t.same(readdirSync(join(dir, 'atomic')), ['snap.json'], 'no temp file left behind')
  t.equal(statSync(file).mode & 0o777, 0o600, 'the file is 0600')
  t.equal(statSync(join(dir, 'atomic')).mode & 0o777, 0o700, 'a directory it creates is 0700')
})
