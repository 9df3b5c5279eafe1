// A consumer project with `strict` and `skipLibCheck: false` (and tsc --init's stricter flags) compiles against
// the built package: our .d.ts and every declaration they reach (fastify, ioredis, ...) type-check.
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { ensureBuilt, root } from './helpers/dist.js'

t.setTimeout(600_000) // a build (when dist/ is stale) and a full type-check: minutes on a busy machine

const CONSUMER = `import Fastify from 'fastify'
import { gateway, metrics, loadBalancer, rateLimit, routeConfigOf, type GatewayConfig } from 'fastify-ha-gateway'

const app = Fastify()
await app.register(metrics)
await app.register(loadBalancer, { upstreams: { users: { targets: [{ id: 'u1', url: 'http://127.0.0.1:3001' }] } } })
await app.register(rateLimit, { headers: 'draft' })
app.get('/users/:id', { config: { upstream: 'users', rateLimit: { algorithm: 'sliding_window', limit: 100, window: '1m' } } }, async (_req, reply) => await reply.proxy())
app.addHook('onRequest', async (request) => {
  const route = routeConfigOf(request) // the route's typed config: no cast
  const upstream: string | undefined = route.upstream
  const limited: boolean = route.rateLimit !== undefined && route.rateLimit !== false
  // @ts-expect-error upstream is a string, not a number: the type is real, not any
  const wrong: number = route.upstream
  void upstream; void limited; void wrong
})
const check = (c: GatewayConfig): number => c.node.port
void gateway; void check
`

function tsc (args: string[], cwd: string): Promise<{ code: number, out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), ...args], { cwd, timeout: 600_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, out: stdout + stderr })
    })
  })
}

t.test('a strict consumer with skipLibCheck false compiles against dist/', async (t) => {
  await ensureBuilt()
  // inside the checkout, so the package's own dependencies resolve from its node_modules as an install's would
  mkdirSync(join(root, '.tmp'), { recursive: true })
  const dir = mkdtempSync(join(root, '.tmp', 'consumer-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(root, join(dir, 'node_modules', 'fastify-ha-gateway'), 'dir')
  writeFileSync(join(dir, 'package.json'), '{ "type": "module", "private": true }\n')
  writeFileSync(join(dir, 'consumer.ts'), CONSUMER)
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      module: 'nodenext', target: 'es2022', strict: true, skipLibCheck: false, noEmit: true, types: ['node'],
      // what `tsc --init` (TypeScript 5.9) turns on besides
      exactOptionalPropertyTypes: true, noUncheckedIndexedAccess: true, verbatimModuleSyntax: true, isolatedModules: true,
    },
    files: ['consumer.ts'],
  }))
  const r = await tsc(['-p', '.'], dir)
  t.equal(r.code, 0, 'tsc exits 0')
  t.equal(r.out.trim(), '', 'no type errors, in our declarations or in those they reach')
})
