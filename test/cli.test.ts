import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'fhg-cli-'))

interface Run { code: number, stdout: string, stderr: string }

/** `node --import tsx bin/fastify-ha-gateway.ts ...args`, from the project root. */
function cli (args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'bin/fastify-ha-gateway.ts', ...args],
      { cwd: root, env: { ...process.env, ...env }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1
        resolve({ code, stdout, stderr })
      })
  })
}

function file (name: string, yaml: string): string {
  const p = join(dir, name)
  writeFileSync(p, yaml)
  return p
}

const GOOD = `
node: { id: gw-1, port: 8080 }
upstreams:
  users:
    strategy: weighted_round_robin
    targets:
      - { id: users-1, url: http://127.0.0.1:3001, weight: 100 }
      - { id: users-2, url: http://127.0.0.1:3002 }
    healthCheck:
      active: { path: /health, interval: 1s, timeout: 500ms }
routes:
  - { path: /users, upstream: users, rateLimit: { algorithm: sliding_window, limit: 100, window: 1s } }
admin: { token: \${ADMIN_TOKEN} }
`

t.test('validate: a good file exits 0 with a summary', async (t) => {
  const good = file('good.yaml', GOOD)
  const r = await cli(['validate', '--config', good], { ADMIN_TOKEN: 'cli-test-admin-token' })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `ok: ${good}`)
  t.match(r.stdout, '1 upstream (users: 2 targets weighted_round_robin), 1 route')
})

t.test('validate: each bad file exits 1 and names the path on stderr', async (t) => {
  const cases: Array<[string, string, string, string]> = [
    ['unknown strategy', GOOD.replace('weighted_round_robin', 'fastest'), 'upstreams.users.strategy', 'must be one of round_robin'],
    ['bad URL', GOOD.replace('http://127.0.0.1:3002', 'ftp://127.0.0.1:3002'), 'upstreams.users.targets[1].url', 'http'],
    ['route to a missing upstream', GOOD.replace('upstream: users', 'upstream: userz'), 'routes[0].upstream', 'unknown upstream "userz"'],
    ['negative weight', GOOD.replace('weight: 100', 'weight: -100'), 'upstreams.users.targets[0].weight', '>= 0'],
    ['unknown key', GOOD.replace('strategy:', 'strtegy:'), 'upstreams.users.strtegy', 'unknown key "strtegy"'],
    ['bad duration', GOOD.replace('interval: 1s', 'interval: 1x'), 'upstreams.users.healthCheck.active.interval', 'duration'],
    ['missing env var', GOOD.replace('ADMIN_TOKEN', 'NOT_SET_ANYWHERE'), 'admin.token', 'NOT_SET_ANYWHERE'],
    ['YAML syntax', GOOD.replace('routes:\n', 'routes: [\n'), 'bad-yaml.yaml:', 'YAML syntax error'],
  ]
  for (const [name, yaml, path, fragment] of cases) {
    const f = file(name === 'YAML syntax' ? 'bad-yaml.yaml' : `${name.replace(/\W+/g, '-')}.yaml`, yaml)
    const r = await cli(['validate', '-c', f], { ADMIN_TOKEN: 'cli-test-admin-token' })
    t.equal(r.code, 1, `${name}: exit 1`)
    t.match(r.stderr, path, `${name}: stderr names ${path}`)
    t.match(r.stderr, fragment, `${name}: stderr says ${fragment}`)
    t.equal(r.stdout, '', `${name}: nothing on stdout`)
  }
})

t.test('environment overrides reach the validated config', async (t) => {
  const f = file('port.yaml', GOOD)
  const r = await cli(['validate', '-c', f], { ADMIN_TOKEN: 'cli-test-admin-token', GATEWAY_PORT: 'not-a-port' })
  t.equal(r.code, 1)
  t.match(r.stderr, 'node.port: GATEWAY_PORT must be a port number')
})

t.test('usage: --help and help exit 0; no command, unknown command, missing --config exit 2', async (t) => {
  for (const args of [['--help'], ['-h'], ['help'], ['validate', '--help']]) {
    const help = await cli(args)
    t.equal(help.code, 0, `${args.join(' ')} exits 0`)
    t.match(help.stdout, 'Usage: fastify-ha-gateway')
    t.equal(help.stderr, '')
  }
  const none = await cli([])
  t.equal(none.code, 2)
  t.match(none.stderr, 'a command is required')
  t.match(none.stderr, 'Usage: fastify-ha-gateway')
  const unknown = await cli(['deploy', '--config', 'x.yaml'])
  t.equal(unknown.code, 2)
  t.match(unknown.stderr, 'unknown command "deploy"')
  const noConfig = await cli(['validate'])
  t.equal(noConfig.code, 2)
  t.match(noConfig.stderr, '--config')
  const missing = await cli(['validate', '-c', join(dir, 'nope.yaml')])
  t.equal(missing.code, 1)
  t.match(missing.stderr, 'ENOENT')
})
