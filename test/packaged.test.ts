// The package as a user installs it (issue 16): `npm pack`, then `npm install <tarball>` in a project of its own,
// then the README's commands through that project's `npx fastify-ha-gateway`: help, validate, start (it serves
// /health and proxies), and an ESM import of the plugins. Dependencies come from npm's cache (the suite's own
// `npm ci` filled it), the registry only for what is missing.
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { ensureBuilt, root } from './helpers/dist.js'

t.setTimeout(600_000) // pack + install + a start: a minute or more on a busy machine

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

function run (cmd: string, args: string[], cwd: string, timeout = 300_000): Promise<{ code: number, out: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, timeout, maxBuffer: 16 << 20, env: { ...process.env, npm_config_update_notifier: 'false' } }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, out: stdout + stderr })
    })
  })
}

const dir = mkdtempSync(join(tmpdir(), 'fhg-packaged-'))
t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })

t.test('npm pack, npm install <tarball>, then the README commands in the consumer project', async (t) => {
  await ensureBuilt()
  const pack = await run(npm, ['pack', '--ignore-scripts', '--pack-destination', dir], root)
  t.equal(pack.code, 0, 'npm pack', { output: pack.out.slice(-2000) })
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'))!
  t.ok(tgz, 'a tarball')
  for (const f of ['dist/bin/fastify-ha-gateway.js', 'dist/index.js', 'dist/index.d.ts', 'README.md', 'docs/configuration.md', 'example-app/gateway.yaml']) {
    t.match(pack.out, f, `the tarball holds ${f}`)
  }
  t.notMatch(pack.out, /\btest\//, 'no tests in the tarball')

  const proj = join(dir, 'consumer')
  await run('mkdir', ['-p', proj], dir)
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true }))
  const inst = await run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', join(dir, tgz)], proj)
  t.equal(inst.code, 0, 'npm install <tarball>', { output: inst.out.slice(-3000) })

  const help = await run(npm, ['exec', '--', 'fastify-ha-gateway', '--help'], proj)
  t.equal(help.code, 0, 'npx fastify-ha-gateway --help exits 0')
  t.match(help.out, /Usage: fastify-ha-gateway <command>/)

  const example = join(proj, 'node_modules', 'fastify-ha-gateway', 'example-app', 'gateway.yaml')
  const valid = await run(npm, ['exec', '--', 'fastify-ha-gateway', 'validate', '--config', example], proj)
  t.equal(valid.code, 0, 'validate the shipped example', { output: valid.out })
  t.match(valid.out, /^ok: /m)

  // an upstream of the test's own, and a config of the consumer's
  const upstream = createServer((req, res) => { res.setHeader('content-type', 'application/json'); res.end(JSON.stringify({ url: req.url })) })
  upstream.listen(0, '127.0.0.1')
  await once(upstream, 'listening')
  t.teardown(() => { upstream.close() })
  const up = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`
  writeFileSync(join(proj, 'gateway.yaml'), `node: { id: packaged, host: 127.0.0.1, port: 0 }
upstreams:
  api: { targets: [{ id: a1, url: ${up} }] }
routes:
  - { path: /api, upstream: api }
`)
  const bad = join(proj, 'bad.yaml')
  writeFileSync(bad, 'upstreams: { api: { targets: [{ id: a1, url: ftp://x }] } }\nroutes: []\n')
  const refused = await run(npm, ['exec', '--', 'fastify-ha-gateway', 'validate', '--config', bad], proj)
  t.not(refused.code, 0, 'a bad config fails validate')
  t.match(refused.out, 'upstreams.api.targets[0].url', 'naming the bad key')

  const child = spawn(join(proj, 'node_modules', '.bin', 'fastify-ha-gateway'), ['start', '--config', 'gateway.yaml'], { cwd: proj, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL') })
  let out = ''
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`no "Server listening at" within 60 s:\n${out}`)) }, 60_000)
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m[1]) }
    })
  })
  t.equal((await fetch(`${address}/health`)).status, 200, 'the installed CLI serves /health')
  const r = await fetch(`${address}/api/x?y=1`)
  t.equal(r.status, 200)
  t.same(await r.json(), { url: '/api/x?y=1' }, 'and proxies')
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'SIGTERM: drained, exit 0')

  writeFileSync(join(proj, 'app.mjs'), `import Fastify from 'fastify'
import { gateway } from 'fastify-ha-gateway'
const app = Fastify()
await app.register(gateway, { upstreams: { api: { targets: [{ id: 'a1', url: '${up}' }] } }, routes: [{ path: '/api', upstream: 'api' }] })
const res = await app.inject({ url: '/api/from-app' })
console.log(res.statusCode, res.body)
await app.close()
`)
  const app = await run(process.execPath, ['app.mjs'], proj)
  t.equal(app.code, 0, 'an app importing the installed package runs', { output: app.out.slice(-2000) })
  t.match(app.out, '200 {"url":"/api/from-app"}', 'its gateway plugin proxies')
})
