#!/usr/bin/env node
// The CLI: `fastify-ha-gateway validate|start --config gateway.yaml`.
import os from 'node:os'
import { parseArgs } from 'node:util'
import { ConfigError, formatIssue, loadConfigFile, optionsTableMarkdown, type GatewayConfig } from '../lib/config/index.js'

const USAGE = `Usage: fastify-ha-gateway <command> --config <file>

Commands:
  validate   check a config file and print a summary (exit 0: valid, 1: invalid)
  start      start a gateway node from a config file (SIGTERM/SIGINT drain and exit 0)
  options    print every config option with its default (Markdown)
  errors     print every error code with its status and when it is answered (Markdown)
  alerts     print the alert rules (the defaults when none are configured);
             with --prometheus, as a Prometheus rule file over the exported metrics

Options:
  -c, --config <file>   the YAML config file
  --prometheus          (alerts) print a Prometheus rule file (YAML)
  -h, --help            this text (also: fastify-ha-gateway help)

Environment: GATEWAY_PORT, GATEWAY_NODE_ID, REDIS_URL and GATEWAY_LOG_LEVEL override
node.port, node.id, cluster.redis and log.level; \${VAR} and \${VAR:-default} in the file
read the environment.
`

/** Asked-for help: usage on stdout, exit 0. */
function help (): number {
  process.stdout.write(USAGE)
  return 0
}

/** A usage error: the message and usage on stderr, exit 2. */
function usage (message: string): number {
  process.stderr.write(`fastify-ha-gateway: ${message}\n\n${USAGE}`)
  return 2
}

/** One line: `3 upstreams (users: 2 targets, ...), 1 route`. */
export function summarize (config: GatewayConfig): string {
  const ups = Object.entries(config.upstreams)
  const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`
  const list = ups.map(([name, u]) => `${name}: ${plural(u.targets.length, 'target')} ${u.strategy}${u.discovery !== undefined ? ' +discovery' : ''}`)
  return `${plural(ups.length, 'upstream')}${list.length > 0 ? ` (${list.join(', ')})` : ''}, ${plural(config.routes.length, 'route')}`
}

function load (file: string): GatewayConfig | undefined {
  try {
    return loadConfigFile(file)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`invalid config: ${file} (${err.issues.length} issue${err.issues.length === 1 ? '' : 's'})\n`)
    for (const issue of err.issues) process.stderr.write(`${formatIssue(issue)}\n`)
    return undefined
  }
}

/** The rules in effect, as a Prometheus rule file or one line each. */
async function alertRulesText (config: GatewayConfig, prometheus: boolean): Promise<string> {
  const { compileRules } = await import('../lib/monitor/rule.js')
  const rules = compileRules(config.alerts.rules)
  if (prometheus) {
    const [{ prometheusRules }, { stringify }] = await Promise.all([import('../lib/monitor/prometheus-rules.js'), import('yaml')])
    return stringify(prometheusRules(rules, { cluster: config.cluster.name, interval: config.alerts.interval }), { lineWidth: 0 })
  }
  return rules.map((r) => `${r.name}: ${r.when}${r.upstream === undefined ? '' : ` upstream=${r.upstream}`} window=${r.window} for=${r.for}ms severity=${r.severity} cooldown=${r.cooldown}ms\n`).join('')
}

async function main (argv: string[]): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, prometheus: { type: 'boolean' } },
    })
  } catch (err) {
    return usage((err as Error).message)
  }
  const { values, positionals } = parsed
  const [command, ...extra] = positionals
  if (values.help === true || command === 'help') return help()
  if (command === undefined) return usage('a command is required')
  if (command === 'options') {
    process.stdout.write(`${optionsTableMarkdown()}\n`)
    return 0
  }
  if (command === 'errors') {
    const { errorsTableMarkdown } = await import('../lib/errors.js')
    process.stdout.write(`${errorsTableMarkdown()}\n`)
    return 0
  }
  if (command !== 'validate' && command !== 'start' && command !== 'alerts') return usage(`unknown command "${command}"`)
  if (extra.length > 0) return usage(`unexpected argument "${extra[0]}"`)
  const file = values.config
  if (file === undefined || file === '') return usage('--config <file> is required')

  const config = load(file)
  if (config === undefined) return 1
  if (command === 'alerts') {
    process.stdout.write(await alertRulesText(config, values.prometheus === true))
    return 0
  }
  if (command === 'validate') {
    process.stdout.write(`ok: ${file}\n${summarize(config)}\n`)
    return 0
  }
  const workers = workerCount(config)
  if (workers > 1) {
    const cluster = (await import('node:cluster')).default
    if (cluster.isPrimary) return await runPrimary(config, workers)
  }
  // imported here so `validate` needs neither fastify nor the plugins; the V8 flag must come first
  const { tuneV8ForProxying } = await import('../lib/v8-tuning.js')
  tuneV8ForProxying()
  const { startNode } = await import('../plugins/gateway.js')
  if (workers > 1) {
    // one worker of the node: the primary holds what the workers share (lib/workers/)
    const [{ WorkerLink }, { processChannel }] = await Promise.all([import('../lib/workers/worker-link.js'), import('../lib/workers/protocol.js')])
    let node: Awaited<ReturnType<typeof startNode>>
    try {
      node = await startNode(config, { logger: true, handleSignals: true, worker: new WorkerLink(processChannel(), Number(process.env.FHG_WORKER_SLOT ?? 1)) })
    } catch (err) {
      // the IPC channel would keep this process alive: exit, so the primary sees the failed boot
      process.stderr.write(`fastify-ha-gateway: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
      process.exit(1)
    }
    // the primary is gone (killed): nothing routes connections here any more
    process.once('disconnect', () => { void node.close().finally(() => process.exit(0)) })
    return -1
  }
  await startNode(config, { logger: true, handleSignals: true })
  return -1 // running: signals end the process
}

/** node.workers: a number, or `auto` (the cores this process may use). */
function workerCount (config: GatewayConfig): number {
  const w = config.node.workers
  return w === 'auto' ? os.availableParallelism() : w
}

/**
 * The primary of a node of N workers: forks them (one listening port, node:cluster), serves no HTTP,
 * replaces a worker that dies, and on SIGTERM/SIGINT drains every worker and exits 0 once all exited 0.
 */
async function runPrimary (config: GatewayConfig, workers: number): Promise<number> {
  const [{ Supervisor }, { pino }] = await Promise.all([import('../lib/workers/supervisor.js'), import('pino')])
  const log = pino({ level: config.log.level === 'silent' ? 'silent' : config.log.level, base: { pid: process.pid, role: 'primary' } })
  const sup = new Supervisor({
    workers,
    log,
    // every worker is the same node: one id (a derived one is the primary's), one cluster member
    env: { GATEWAY_NODE_ID: config.node.id },
    limits: config.cluster.redis === undefined,
    killAfter: config.drain.delay + config.drain.timeout + 5000,
  })
  let stopping: Promise<number> | undefined
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal, workers: sup.workers }, 'shutting down: draining every worker')
    stopping ??= sup.stop('SIGTERM')
    void stopping.then((code) => {
      log.info({ code }, 'every worker exited')
      log.flush()
      process.exit(code)
    })
  }
  process.once('SIGTERM', onSignal)
  process.once('SIGINT', onSignal)
  log.info({ workers, limits: config.cluster.redis === undefined ? 'primary' : 'redis' }, 'starting workers')
  try {
    await sup.start()
  } catch (err) {
    log.error({ err: (err as Error).message }, 'the node did not start')
    return 1
  }
  log.info({ workers }, 'every worker listens')
  return -1
}

main(process.argv.slice(2)).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`fastify-ha-gateway: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exitCode = 1
})
