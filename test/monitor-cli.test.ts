// `fastify-ha-gateway alerts --config file [--prometheus]`: the rules in effect, and the same rules as a
// Prometheus rule file (checked by promtool when it is installed).
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

const root = fileURLToPath(new URL('..', import.meta.url))
const dir = mkdtempSync(join(tmpdir(), 'fhg-monitor-cli-'))

async function run (cmd: string, args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(cmd, args, { cwd: root, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })
    })
  })
}
const cli = async (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> =>
  await run(process.execPath, ['--import', 'tsx', 'bin/fastify-ha-gateway.ts', ...args])

function file (name: string, yaml: string): string {
  const p = join(dir, name)
  writeFileSync(p, yaml)
  return p
}

const CONFIG = file('gw.yaml', `
cluster: { name: prod }
upstreams:
  users: { targets: [{ id: t1, url: "http://127.0.0.1:3001" }] }
alerts:
  interval: 15s
  rules:
    - { name: users_slow, when: "p99_ms > 500", upstream: users, window: 5m, for: 2m, severity: error }
    - { name: users_errors, when: "error_rate >= 0.1", upstream: users }
    - { name: few_nodes, when: "nodes < 3", severity: critical, cooldown: 10m }
    - { name: unhealthy, when: "healthy_ratio < 0.7" }
    - { name: hot, when: "cpu_percent > 90" }
    - { name: fat, when: "rss_mb > 1024" }
    - { name: laggy, when: "event_loop_lag_ms > 200" }
`)

t.test('alerts --prometheus prints a rule file over the exported metrics', async (t) => {
  const r = await cli(['alerts', '--config', CONFIG, '--prometheus'])
  t.equal(r.code, 0, r.stderr)
  const doc = parse(r.stdout) as { groups: Array<{ name: string, interval: string, rules: Array<Record<string, any>> }> }
  t.equal(doc.groups[0].name, 'fastify-ha-gateway-prod')
  t.equal(doc.groups[0].interval, '15s')
  const byName = Object.fromEntries(doc.groups[0].rules.map((x) => [x.alert, x]))
  t.same(Object.keys(byName), ['users_slow', 'users_errors', 'few_nodes', 'unhealthy', 'hot', 'fat', 'laggy'])
  t.equal(byName.users_slow.expr, 'histogram_quantile(0.99, sum by (le) (rate(proxy_request_duration_seconds_bucket{upstream="users"}[5m]))) * 1000 > 500')
  t.equal(byName.users_slow.for, '120s')
  t.same(byName.users_slow.labels, { severity: 'error', cluster: 'prod', upstream: 'users' })
  t.equal(byName.users_errors.expr, 'sum(rate(proxy_requests_total{upstream="users",status_class="5xx"}[1m])) / sum(rate(proxy_requests_total{upstream="users"}[1m])) >= 0.1')
  t.equal(byName.few_nodes.expr, 'max(cluster_nodes) < 3')
  t.match(byName.unhealthy.expr, /upstream_target_healthy/)
  t.match(byName.laggy.expr, /nodejs_eventloop_lag_p99_seconds/)
  t.notOk('for' in byName.few_nodes, 'no for when the rule has none')
  const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p))
  if (promtool === undefined) {
    t.comment('promtool not installed: the rule file is not checked by Prometheus itself')
  } else {
    const rules = file('rules.yaml', r.stdout)
    const check = await run(promtool, ['check', 'rules', rules])
    t.equal(check.code, 0, `promtool check rules: ${check.stdout}${check.stderr}`)
  }
})

t.test('alerts without --prometheus lists the rules in effect: the defaults when none are configured', async (t) => {
  const r = await cli(['alerts', '--config', file('bare.yaml', 'upstreams: {}\n')])
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, /^high_error_rate: error_rate > 0\.05 .*severity=warning cooldown=300000ms$/m)
  t.match(r.stdout, /^low_healthy_instances: healthy_ratio < 0\.7 .*severity=critical cooldown=60000ms$/m)
  const bad = await cli(['alerts', '--config', file('bad.yaml', 'alerts: { rules: [{ name: x, when: "lag > 1" }] }\n')])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /alerts\.rules\[0\]\.when.*unknown metric "lag"/)
})
