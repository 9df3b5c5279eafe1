// lib/errors.ts is the one hub: every FHG_ERR_ code the code base writes is a row there, with a status and a "when".
import t from 'tap'
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { ERRORS, errorsTableMarkdown, GatewayError, type GatewayErrorDef } from '../lib/errors.js'
import { startGateway, get } from './helpers/gateway.js'
import { startUpstream, type UpstreamProcess } from './helpers/upstream.js'

const root = fileURLToPath(new URL('..', import.meta.url))

function sources (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) return sources(p)
    return p.endsWith('.ts') ? [p] : []
  })
}

t.test('every FHG_ERR_ code written in lib/, plugins/, bin/ and types/ is in lib/errors.ts', async (t) => {
  const hub = new Set(Object.values(ERRORS).map((e: GatewayErrorDef) => e.code))
  const files = ['lib', 'plugins', 'bin', 'types'].flatMap((d) => sources(join(root, d))).concat(join(root, 'index.ts'))
  const used = new Map<string, string>()
  for (const f of files) {
    if (f.endsWith(join('lib', 'errors.ts'))) continue
    for (const m of readFileSync(f, 'utf8').matchAll(/FHG_ERR_[A-Z0-9_]+/g)) used.set(m[0], f.slice(root.length))
  }
  t.ok(used.size > 0, 'the scan finds codes (it looks where they are)')
  for (const [code, file] of used) t.ok(hub.has(code), `${code} (${file}) is in the hub`)
  t.ok(used.has('FHG_ERR_INVALID_CONFIG'), 'codes named in comments count too')
})

t.test('each row: a unique FHG_ERR_ code named after its key, an HTTP error status, a message and when it happens', async (t) => {
  const codes = new Set<string>()
  for (const [name, def] of Object.entries(ERRORS) as Array<[string, GatewayErrorDef]>) {
    t.equal(def.code, `FHG_ERR_${name}`, `${name}: code`)
    t.ok(def.statusCode >= 400 && def.statusCode < 600, `${name}: ${def.statusCode} is an error status`)
    t.ok(def.message.length > 0 && def.when.length > 10, `${name}: message and when`)
    t.notOk(codes.has(def.code), `${def.code} once`)
    codes.add(def.code)
  }
  const table = errorsTableMarkdown().split('\n')
  t.equal(table.length, Object.keys(ERRORS).length + 2, 'the docs table has a row per code')
  t.match(table[2], /^\| `FHG_ERR_[A-Z_]+` \| \d{3} \| .+ \|$/)
  const e = new GatewayError('BAD_REQUEST', 'x')
  t.same(e.toJSON(), { statusCode: 400, code: 'FHG_ERR_BAD_REQUEST', error: 'Bad Request', message: 'x' })
})

t.test('FHG_ERR_BAD_PATH: a URL a parser would change gets a 400 from the hub, not a try', async (t) => {
  const up: UpstreamProcess = await startUpstream()
  t.teardown(async () => { await up.kill() })
  const { app, url } = await startGateway({ upstreams: { u: { targets: [{ id: 'a', url: up.url }] } } }, [{ prefix: '/api', upstream: 'u' }])
  t.teardown(() => app.close())
  for (const path of ['/api/a/..%2fsecret', '/api/..%2F..%2Fetc/passwd']) { // (undici's URL would resolve a plain ../ before sending)
    const r = await get(`${url}${path}`)
    t.equal(r.status, 400, `${path}: 400`)
    t.equal(r.body?.code, 'FHG_ERR_BAD_PATH', `${path}: the hub's code`)
    t.equal(r.body?.error, 'Bad Request')
  }
  t.equal((await up.stats()).requests, 0, 'nothing reached the upstream')
  t.equal((await get(`${url}/api/ok`)).status, 200, 'the gateway still serves')
})

t.test('docs/errors.md: the setErrorHandler example runs as written (a free port, an upstream that refuses) and shapes the 502', async (t) => {
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8')
  const m = /## Shaping errors with setErrorHandler[\s\S]*?```ts\n([\s\S]*?)```/.exec(doc)
  t.ok(m, 'the section has its example')
  const dead = { url: 'http://127.0.0.1:1' } // refused at once: nothing listens on port 1 here
  const source = m![1]
    .replace("from 'fastify-ha-gateway'", `from '${pathToFileURL(join(root, 'index.ts')).href}'`)
    .replaceAll('port: 8080', 'port: 0')
    .replace('http://127.0.0.1:3001', dead.url)
    .replace('logger: true', 'logger: false') + '\nexport { app }\n'
  const file = join(root, 'test', `.errors-doc-example-${process.pid}.ts`)
  writeFileSync(file, source)
  t.teardown(() => { rmSync(file, { force: true }) })
  const { app } = await import(pathToFileURL(file).href) as { app: { server: { address: () => { port: number } }, close: () => Promise<void> } }
  t.teardown(async () => { await app.close() })
  const res = await get(`http://127.0.0.1:${app.server.address().port}/users`)
  t.ok(res.status === 502 || res.status === 503, `the gateway's own answer: ${res.status}`)
  t.match(res.body, { error: { code: /^FHG_ERR_(UPSTREAM_CONNECT|NO_HEALTHY_TARGET)$/, status: res.status, requestId: String } }, 'in the app\'s shape')
  t.equal(res.headers['retry-after'], '5')
  const bad = await get(`http://127.0.0.1:${app.server.address().port}/users/..%2fx`)
  t.equal(bad.status, 400, 'an error the handler passes on')
  t.match(bad.body, { statusCode: 400, code: 'FHG_ERR_BAD_PATH' }, 'gets the default answer')
})
